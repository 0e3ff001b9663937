"""Everything that runs a model and measures it. Qt-free; frameworks imported lazily."""
