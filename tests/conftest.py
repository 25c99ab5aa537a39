import pytest

from mfsgd import _sgd
from mfsgd.datasets import make_ratings


@pytest.fixture(scope="session")
def small_data():
    """(users, items, ratings) arrays: 300 users x 200 items, 6000 ratings, noise 0.3."""
    return make_ratings(300, 200, 6000, rank=4, noise=0.3, random_state=7, as_frame=False)


@pytest.fixture(scope="session")
def lowrank():
    """Train/test split of a low-rank set with noise 0.25 and enough ratings per row."""
    (u, i, r), truth = make_ratings(400, 300, 40_000, rank=3, noise=0.25, random_state=3,
                                    as_frame=False, return_truth=True)
    n = 36_000
    return (u[:n], i[:n], r[:n]), (u[n:], i[n:], r[n:]), truth


def isa_variants():
    from mfsgd import _kernels

    return _kernels.available()


@pytest.fixture(params=isa_variants(), ids=lambda i: _sgd.isa_name(i))
def isa(request):
    """Run a test under each SIMD variant this CPU supports, then restore the default."""
    before = _sgd.isa_current()
    _sgd.isa_select(request.param)
    yield request.param
    _sgd.isa_select(before)
