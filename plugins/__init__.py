"""Built-in promptopt plugins. Each is registered through a ``promptopt`` entry point, like any third-party one."""
