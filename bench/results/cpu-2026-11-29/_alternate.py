"""The loop this folder's A/B scripts (ab_*.py) time their variants with: in one process,
the variants in turns, the order rotating from round to round, each round's times kept so
that the VM's two speeds show (bench/compare.py's ``compare`` is the suite's version of the
same idea: it settles between blocks and keeps only the medians)."""
import contextlib
import time


def alternate(steps, rounds, calls=3, turn=lambda label: contextlib.nullcontext(), each_round=None):
    """Milliseconds a call of each of ``steps`` (label -> callable), round by round: each
    turn runs its step once untimed, then ``calls`` times timed, inside ``turn(label)`` (a
    context that switches that variant in); ``each_round(times)`` after every round."""
    labels = list(steps)
    times = {label: [] for label in labels}
    for r in range(rounds):
        for label in labels[r % len(labels):] + labels[:r % len(labels)]:
            with turn(label):
                steps[label]()
                start = time.perf_counter()
                for _ in range(calls):
                    steps[label]()
                times[label].append((time.perf_counter() - start) / calls * 1e3)
        if each_round is not None:
            each_round(times)
    return times


def print_round(times):
    """``each_round`` for a log: the time, then each variant's last figure."""
    print(time.strftime("%H:%M:%S"), " ".join(f"{label} {t[-1]:.1f}" for label, t in times.items()), flush=True)


@contextlib.contextmanager
def setting(owner, name, value):
    """``owner.name`` = ``value`` inside the block (a variant switched in)."""
    setattr(owner, name, value)
    yield
