"""The planner: blueprint and stored state in, a Plan of plain values out. No effects."""

from jupyter_dataflow.plan.planner import Plan, StagePlan, Task

__all__ = ["Plan", "StagePlan", "Task"]
