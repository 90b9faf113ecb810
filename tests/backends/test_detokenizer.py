from backends.detokenizer import IncrementalDetokenizer


class CharDecoder:
    """Token i is one character of a fixed table; token 99 is half of a character."""

    table = {i: c for i, c in enumerate("abcdefgh XYZ")}

    def decode(self, ids: list[int]) -> str:
        text = ""
        for i, t in enumerate(ids):
            if t == 99:
                text += "é" if i + 1 < len(ids) and ids[i + 1] == 98 else "\ufffd"
            elif t == 98:
                continue
            else:
                text += self.table[t]
        return text


def _feed(detok: IncrementalDetokenizer, ids: list[int]) -> list[str]:
    return [detok.add(t) for t in ids]


def test_deltas_concatenate_to_the_text() -> None:
    d = IncrementalDetokenizer(CharDecoder())
    deltas = _feed(d, [0, 1, 2, 8, 3])
    assert "".join(deltas) + d.flush() == "abc d"


def test_incomplete_character_is_held_back() -> None:
    d = IncrementalDetokenizer(CharDecoder())
    assert _feed(d, [0, 99]) == ["a", ""]
    assert d.add(98) == "é"


def test_stop_string_ends_text_before_it() -> None:
    d = IncrementalDetokenizer(CharDecoder(), stop=("cd",))
    deltas = _feed(d, [0, 1, 2])  # "abc": "c" may start "cd", so it is held
    assert "".join(deltas) == "ab"
    assert d.add(3) == ""  # "abcd": stop found
    assert d.stopped and d.text == "ab"
    assert d.flush() == ""


def test_held_prefix_is_released_when_it_does_not_match() -> None:
    d = IncrementalDetokenizer(CharDecoder(), stop=("cd",))
    assert "".join(_feed(d, [0, 2, 4])) == "ace"
    assert not d.stopped


def test_flush_releases_held_text_at_the_end() -> None:
    d = IncrementalDetokenizer(CharDecoder(), stop=("cd",))
    assert "".join(_feed(d, [0, 2])) == "a"
    assert d.flush() == "c"
