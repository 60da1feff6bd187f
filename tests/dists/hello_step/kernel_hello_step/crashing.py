"""A plugin that cannot even be imported, to prove an installed one does not take hints down."""

raise RuntimeError("this plugin is broken on purpose")
