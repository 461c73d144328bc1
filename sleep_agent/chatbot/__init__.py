"""Chat front ends over sleepable memory: the terminal (``sleep-agent chat``) and the web page (``sleep-agent web``)."""
