"""Learning-rate schedules.

A schedule is a callable ``t -> learning rate`` of the 1-based step number
``t`` (the step about to be taken). Any Python callable works as a
``learning_rate``; the classes here also carry a numeric description
(:meth:`Schedule.as_tuple`) so that compiled loops can evaluate them without
calling back into Python (:func:`evaluate`).

=================  ===============================================  ====
schedule           learning rate at step t (t = 1, 2, ...)          code
=================  ===============================================  ====
``constant``       ``lr``                                           0
``inverse_sqrt``   ``lr / sqrt(t)`` (the paper's convergence        1
                   theorem, section 4)
``exponential``    ``lr * rate ** ((t - 1) / steps)`` (floored      2
                   exponent when ``staircase``)
``cosine``         ``lr * ((1 - alpha) * (1 + cos(pi * min(t - 1,   3
                   steps) / steps)) / 2 + alpha)``
=================  ===============================================  ====

Examples
--------
>>> from adamsci import schedules
>>> s = schedules.inverse_sqrt(0.1)
>>> float(s(4))
0.05
>>> s
inverse_sqrt(learning_rate=0.1)
"""
import math

__all__ = ["Schedule", "constant", "inverse_sqrt", "exponential", "cosine",
           "evaluate"]


def _positive(name, value):
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


class Schedule:
    """Base class: ``code`` selects the formula, ``a``/``b`` its parameters.

    Use the subclasses (:class:`constant`, :class:`inverse_sqrt`,
    :class:`exponential`, :class:`cosine`); calling a schedule with the
    1-based step number ``t`` returns the learning rate of that step.

    Parameters
    ----------
    learning_rate : float
        The learning rate at step 1, a finite number > 0.
    a, b : float, default 0
        The formula's two parameters, as :func:`evaluate` reads them.
    flag : bool, default False
        The formula's switch (``staircase`` of :class:`exponential`).
    """

    code = -1
    _names = ()

    def __init__(self, learning_rate, a=0.0, b=0.0, flag=False):
        self.learning_rate = _positive("learning_rate", learning_rate)
        self._a, self._b, self._flag = float(a), float(b), bool(flag)

    def as_tuple(self):
        """``(code, learning_rate, a, b, flag)`` for :func:`evaluate`."""
        return (self.code, self.learning_rate, self._a, self._b, self._flag)

    def __call__(self, t):
        return evaluate(*self.as_tuple(), t)

    def __repr__(self):
        args = [f"learning_rate={self.learning_rate!r}"]
        args += [f"{k}={getattr(self, k)!r}" for k in self._names]
        return f"{type(self).__name__}({', '.join(args)})"

    def __eq__(self, other):
        return type(self) is type(other) and self.as_tuple() == other.as_tuple()

    def __hash__(self):
        return hash(self.as_tuple())


class constant(Schedule):
    """``lr`` at every step.

    Parameters
    ----------
    learning_rate : float
        The learning rate at step 1, a finite number > 0.
    """

    code = 0

    def __init__(self, learning_rate):
        super().__init__(learning_rate)


class inverse_sqrt(Schedule):
    """``lr / sqrt(t)``: the decay of the paper's regret bound (section 4).

    Parameters
    ----------
    learning_rate : float
        The learning rate at step 1, a finite number > 0.
    """

    code = 1

    def __init__(self, learning_rate):
        super().__init__(learning_rate)


class exponential(Schedule):
    """``lr * decay_rate ** ((t - 1) / decay_steps)``; floored if staircase.

    Parameters
    ----------
    learning_rate : float
        The learning rate at step 1, a finite number > 0.
    decay_rate : float
        The factor (> 0) by which the learning rate is multiplied every
        ``decay_steps`` steps, e.g. 0.5 to halve it.
    decay_steps : float, default 1
        The number of steps (> 0) over which the rate falls by
        ``decay_rate``.
    staircase : bool, default False
        Floor the exponent: the rate falls in steps, once every
        ``decay_steps`` steps, instead of smoothly.

    Examples
    --------
    >>> from adamsci import schedules
    >>> s = schedules.exponential(0.1, 0.5, decay_steps=100)
    >>> round(s(1), 6), round(s(101), 6)
    (0.1, 0.05)
    """

    code = 2
    _names = ("decay_rate", "decay_steps", "staircase")

    def __init__(self, learning_rate, decay_rate, decay_steps=1,
                 staircase=False):
        decay_rate = _positive("decay_rate", decay_rate)
        decay_steps = _positive("decay_steps", decay_steps)
        super().__init__(learning_rate, decay_rate, decay_steps, staircase)
        self.decay_rate, self.decay_steps = decay_rate, decay_steps
        self.staircase = bool(staircase)


class cosine(Schedule):
    """Cosine decay from ``lr`` to ``alpha * lr`` over ``decay_steps`` steps.

    Parameters
    ----------
    learning_rate : float
        The learning rate at step 1, a finite number > 0.
    decay_steps : float
        The number of steps (> 0) of the decay; after them the rate stays
        at ``alpha * learning_rate``.
    alpha : float, default 0
        The final rate as a fraction of ``learning_rate``, in [0, 1].
    """

    code = 3
    _names = ("decay_steps", "alpha")

    def __init__(self, learning_rate, decay_steps, alpha=0.0):
        decay_steps = _positive("decay_steps", decay_steps)
        alpha = float(alpha)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
        super().__init__(learning_rate, decay_steps, alpha)
        self.decay_steps, self.alpha = decay_steps, alpha


def evaluate(code, lr, a, b, flag, t):
    """Learning rate of schedule ``code`` at step ``t`` (plain Python; Numba
    compiles it unchanged for compiled loops).

    Parameters
    ----------
    code : int
        The formula: 0 constant, 1 inverse square root, 2 exponential,
        3 cosine (the table of :mod:`adamsci.schedules`).
    lr : float
        The learning rate at step 1.
    a, b, flag : float, float, bool
        The formula's parameters: ``(decay_rate, decay_steps, staircase)``
        for code 2, ``(decay_steps, alpha, -)`` for code 3, unused
        otherwise.
    t : int or float
        The 1-based step number.

    Returns
    -------
    float
        The learning rate of step ``t``.

    Examples
    --------
    >>> from adamsci import schedules
    >>> s = schedules.cosine(1.0, decay_steps=10)
    >>> schedules.evaluate(*s.as_tuple(), 6) == s(6)
    True
    """
    if code == 1:
        return lr / math.sqrt(t)
    if code == 2:
        e = (t - 1) / b
        if flag:
            e = math.floor(e)
        return lr * a ** e
    if code == 3:
        progress = min(t - 1.0, a) / a
        return lr * ((1.0 - b) * 0.5 * (1.0 + math.cos(math.pi * progress))
                     + b)
    return lr
