"""adamsci's benchmarks: ``python -m adamsci bench --suite NAME``."""

#: The end of a compile-time subprocess script: the six longest Numba
#: compilations its ``listener`` (a ``numba.core.event.RecordingListener``
#: registered for "numba:compile") saw, as ``compiled`` (seconds, name).
COMPILE_SPANS = '''
starts, spans = {}, []
for ts, ev in listener.buffer:
    name = ev.data["dispatcher"].py_func.__qualname__
    if ev.is_start:
        starts[name] = ts
    elif name in starts:
        spans.append((ts - starts.pop(name), name))
compiled = sorted(spans, reverse=True)[:6]
'''
