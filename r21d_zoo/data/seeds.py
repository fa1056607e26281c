"""Seeds of random clip choices that depend only on (seed, epoch, example), never on worker or rank assignment."""


def epoch_seed(seed: int, epoch: int, index: int) -> int:
    """A per-(epoch, example) seed: a resumed or re-sharded run draws the same clips."""
    return (seed * 1_000_003 + epoch * 10_007 + index) % (2**63 - 1)
