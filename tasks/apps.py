from django.apps import AppConfig


class TasksConfig(AppConfig):
    name = "tasks"
    verbose_name = "Work"

    def ready(self) -> None:
        # The built-in tool families register themselves on import; here, once every app's
        # models are loaded, so that importing the registry never pulls models in.
        from tasks.mcp import tools as mcp_tools  # noqa: F401
        from tasks.tools import builtin, delegate  # noqa: F401
