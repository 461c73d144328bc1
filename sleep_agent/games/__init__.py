"""Text games for long-horizon agents: an offline game family and a LangGraph player with memory.

``TextGame`` wraps TextWorldExpress (a PyPI package with a bundled Java engine); ``GamePlayer``
plays it with a :class:`~sleep_agent.SleepMemory` recording each game as one episode, so that a
sleep imitates the games that were won.
"""
