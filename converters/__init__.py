"""Everything that reads, changes or writes a model. Qt-free; frameworks imported lazily."""
