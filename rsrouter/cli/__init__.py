"""The ``rsrouter`` command: :mod:`.main` (entry point, top-level parser), :mod:`.common`
(argument types, shared options and helpers) and one module per command group."""
