"""The project's own Llama model, built deterministically (no model hub)."""

from backends.model.build import build_model, default_model_dir, read_manifest, resolve_model
from backends.model.recipe import RECIPES, ModelRecipe

__all__ = ["RECIPES", "ModelRecipe", "build_model", "default_model_dir", "read_manifest", "resolve_model"]
