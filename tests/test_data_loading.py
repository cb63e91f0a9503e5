"""ranvier.data loading: Dataset/TensorDataset/DataLoader, train_val_test_split, transforms,
protein encoding."""

import json

import numpy as np
import pytest

import ranvier
from ranvier.data import DataLoader, Dataset, TensorDataset, train_val_test_split


def make_xy(n=23, features=3):
    x = np.arange(n * features, dtype=np.float32).reshape(n, features)
    y = np.arange(n, dtype=np.int64)
    return x, y


class ListDataset(Dataset):
    """A generic (non-TensorDataset) dataset: samples built one by one in Python."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


# ------------------------------------------------------------------------- TensorDataset

def test_tensor_dataset_items_and_inputs():
    x, y = make_xy()
    ds = TensorDataset(x, ranvier.tensor(y), y.tolist())
    assert len(ds) == 23
    xi, yi, zi = ds[5]
    np.testing.assert_array_equal(xi, x[5])
    assert yi == 5 and zi == 5
    assert all(isinstance(a, np.ndarray) for a in ds.arrays)
    assert "(23, 3)" in repr(ds)


def test_tensor_dataset_errors():
    with pytest.raises(ValueError, match="TensorDataset: needs at least one array"):
        TensorDataset()
    with pytest.raises(ValueError, match=r"same length along the first dimension, got shapes "
                                         r"\(4, 2\), \(5,\)"):
        TensorDataset(np.zeros((4, 2)), np.zeros(5))
    with pytest.raises(ValueError, match=r"array 1 is a scalar"):
        TensorDataset(np.zeros(3), np.float64(1.0))


def test_base_dataset_must_be_subclassed():
    with pytest.raises(NotImplementedError, match="Dataset must define __len__"):
        len(Dataset())


# ---------------------------------------------------------------------------- DataLoader

@pytest.mark.parametrize("n, batch_size, drop_last", [(23, 5, False), (23, 5, True),
                                                      (20, 5, False), (20, 5, True),
                                                      (1, 4, False), (7, 1, False),
                                                      (3, 7, True), (0, 3, False)])
def test_batches_cover_the_data_in_order(n, batch_size, drop_last):
    x, y = make_xy(n)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, drop_last=drop_last)
    batches = list(loader)
    expected_batches = n // batch_size if drop_last else -(-n // batch_size)
    assert len(loader) == len(batches) == expected_batches
    kept = expected_batches * batch_size if drop_last else n
    if batches:
        assert all(len(b) == 2 for b in batches)
        assert all(b[0].shape[0] == batch_size for b in batches[:-1])
        np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y[:kept])
        np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), x[:kept])
        assert batches[0][0].dtype == np.float32 and batches[0][1].dtype == np.int64


def test_generic_path_matches_fast_path():
    x, y = make_xy(17)
    fast = list(DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True, seed=3))
    slow = list(DataLoader(ListDataset(x, y), batch_size=4, shuffle=True, seed=3))
    assert len(fast) == len(slow) == 5
    for (fx, fy), (sx, sy) in zip(fast, slow):
        np.testing.assert_array_equal(fx, sx)
        np.testing.assert_array_equal(fy, sy)


def test_single_array_samples_give_one_tuples():
    class Squares(Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return np.full(2, i * i, dtype=np.float64)

    (batch,), (last,) = DataLoader(Squares(), batch_size=3)
    np.testing.assert_array_equal(batch[:, 0], [0, 1, 4])
    assert last.shape == (2, 2)


def test_batches_are_copies():
    x, y = make_xy(6)
    original = x.copy()
    for xb, _ in DataLoader(TensorDataset(x, y), batch_size=4):
        xb[:] = -1
    np.testing.assert_array_equal(x, original)


def test_shuffle_is_a_permutation_reshuffled_every_epoch():
    x, y = make_xy(50)
    loader = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True, seed=0)
    epochs = [np.concatenate([yb for _, yb in loader]) for _ in range(3)]
    for order in epochs:
        np.testing.assert_array_equal(np.sort(order), y)
    assert not np.array_equal(epochs[0], epochs[1])
    assert not np.array_equal(epochs[1], epochs[2])
    # rows stay aligned across fields
    for xb, yb in loader:
        np.testing.assert_array_equal(xb, x[yb])


def test_shuffle_reproducible_with_seed_and_manual_seed():
    x, y = make_xy(40)

    def two_epochs(**kwargs):
        loader = DataLoader(TensorDataset(x, y), batch_size=6, shuffle=True, **kwargs)
        return [np.concatenate([yb for _, yb in loader]) for _ in range(2)]

    a, b = two_epochs(seed=11), two_epochs(seed=11)
    np.testing.assert_array_equal(np.array(a), np.array(b))
    assert not np.array_equal(two_epochs(seed=12)[0], a[0])
    ranvier.manual_seed(5)
    c = two_epochs()
    ranvier.manual_seed(5)
    d = two_epochs()
    np.testing.assert_array_equal(np.array(c), np.array(d))
    ranvier.manual_seed(6)
    assert not np.array_equal(two_epochs()[0], c[0])


def test_no_shuffle_leaves_default_generator_alone():
    ranvier.manual_seed(1)
    before = ranvier.random.get_rng_state()
    DataLoader(TensorDataset(*make_xy()), batch_size=2)
    DataLoader(TensorDataset(*make_xy()), batch_size=2, shuffle=True, seed=4)
    assert ranvier.random.get_rng_state() == before


def epoch_orders(loader, epochs):
    return [np.concatenate([yb for _, yb in loader]).tolist() for _ in range(epochs)]


def test_resume_between_epochs_is_exact():
    x, y = make_xy(31)
    reference = epoch_orders(DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True,
                                        seed=9), 5)
    first = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True, seed=9)
    assert epoch_orders(first, 2) == reference[:2]
    state = json.loads(json.dumps(first.state_dict()))          # survives JSON
    assert state["epochs_completed"] == 2 and state["batches_yielded"] == 0
    resumed = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True, seed=12345)
    resumed.load_state_dict(state)
    assert epoch_orders(resumed, 3) == reference[2:]
    assert resumed.state_dict()["epochs_completed"] == 5


def test_resume_mid_epoch_is_exact():
    x, y = make_xy(31)
    reference = epoch_orders(DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True,
                                        seed=2), 3)
    first = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True, seed=2)
    epoch_orders(first, 1)
    iterator = iter(first)
    seen = [next(iterator)[1] for _ in range(3)]
    state = first.state_dict()
    assert state["batches_yielded"] == 3 and state["epochs_completed"] == 1
    resumed = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True, seed=0)
    resumed.load_state_dict(state)
    rest = [yb for _, yb in resumed]
    assert len(rest) == len(resumed) - 3
    assert np.concatenate(seen + rest).tolist() == reference[1]
    assert epoch_orders(resumed, 1) == [reference[2]]


def test_resume_without_shuffle_mid_epoch():
    x, y = make_xy(10)
    loader = DataLoader(TensorDataset(x, y), batch_size=3)
    iterator = iter(loader)
    next(iterator)
    state = loader.state_dict()
    assert state == {"epochs_completed": 0, "generator": None, "batches_yielded": 1}
    resumed = DataLoader(TensorDataset(x, y), batch_size=3)
    resumed.load_state_dict(state)
    assert np.concatenate([yb for _, yb in resumed]).tolist() == list(range(3, 10))


def test_loader_errors():
    ds = TensorDataset(*make_xy())
    with pytest.raises(ValueError, match="DataLoader: batch_size must be >= 1, got 0"):
        DataLoader(ds, batch_size=0)
    with pytest.raises(TypeError, match="DataLoader: batch_size must be an int"):
        DataLoader(ds, batch_size=2.0)
    with pytest.raises(ValueError, match="DataLoader: seed must be a non-negative int"):
        DataLoader(ds, shuffle=True, seed=-1)
    with pytest.raises(TypeError, match="DataLoader: dataset must define __len__"):
        DataLoader(object())
    shuffled = DataLoader(ds, shuffle=True, seed=0)
    with pytest.raises(ValueError, match="saved from a loader with shuffle=False"):
        shuffled.load_state_dict(DataLoader(ds).state_dict())
    with pytest.raises(ValueError, match="not a DataLoader state"):
        shuffled.load_state_dict({"epochs": 1})
    with pytest.raises(ValueError, match="batches_yielded=99 is outside"):
        DataLoader(ds).load_state_dict({"epochs_completed": 0, "generator": None,
                                        "batches_yielded": 99})

    class Ragged(Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return np.zeros(i + 1), 0

    with pytest.raises(ValueError, match="cannot stack field 0 of the samples: shapes differ"):
        list(DataLoader(Ragged(), batch_size=2))


# ------------------------------------------------------------------------------- splits

def test_split_sizes_disjoint_and_aligned():
    x, y = make_xy(100)
    (xtr, ytr), (xva, yva), (xte, yte) = train_val_test_split(x, y, val_size=0.15,
                                                              test_size=0.2, seed=0)
    assert (len(ytr), len(yva), len(yte)) == (65, 15, 20)
    np.testing.assert_array_equal(np.sort(np.concatenate([ytr, yva, yte])), y)
    for xs, ys in ((xtr, ytr), (xva, yva), (xte, yte)):
        np.testing.assert_array_equal(xs, x[ys])
    again = train_val_test_split(x, y, val_size=0.15, test_size=0.2, seed=0)
    np.testing.assert_array_equal(again[1][1], yva)
    counts = train_val_test_split(y, val_size=10, test_size=0, seed=1)
    assert [len(part[0]) for part in counts] == [90, 10, 0]


def test_split_stratified_keeps_proportions():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.array(["a", "b", "c"]), [60, 30, 10])
    rng.shuffle(labels)
    ids = np.arange(100)
    (itr, ltr), (iva, lva), (ite, lte) = train_val_test_split(ids, labels, val_size=0.2,
                                                              test_size=0.1, stratify=labels,
                                                              seed=3)
    for part, expected in ((lva, {"a": 12, "b": 6, "c": 2}), (lte, {"a": 6, "b": 3, "c": 1}),
                           (ltr, {"a": 42, "b": 21, "c": 7})):
        values, counts = np.unique(part, return_counts=True)
        assert dict(zip(values.tolist(), counts.tolist())) == expected
    np.testing.assert_array_equal(labels[ite], lte)


def test_split_stratified_rare_class_appears_everywhere():
    labels = np.array([0] * 40 + [1] * 3)
    parts = train_val_test_split(labels, stratify=labels, seed=0)
    for (part,) in parts:
        assert set(part.tolist()) == {0, 1}


def test_split_errors():
    x = np.zeros(10)
    with pytest.raises(ValueError, match="train_val_test_split: val_size=0.5 and "
                                         "test_size=0.5 take 5 \\+ 5 of 10 samples"):
        train_val_test_split(x, val_size=0.5, test_size=0.5)
    with pytest.raises(ValueError, match=r"fraction must lie in \[0, 1\), got 1.5"):
        train_val_test_split(x, val_size=1.5)
    with pytest.raises(ValueError, match="val_size must be >= 0"):
        train_val_test_split(x, val_size=-2)
    with pytest.raises(ValueError, match="same length along the first dimension"):
        train_val_test_split(x, np.zeros(9))
    with pytest.raises(ValueError, match=r"stratify must have shape \(10,\)"):
        train_val_test_split(x, stratify=np.zeros(9))
    with pytest.raises(ValueError, match=r"at least 3 members of every class .* class\(es\) "
                                         r"1 \(2\)"):
        train_val_test_split(x, stratify=np.array([0] * 8 + [1] * 2))
    with pytest.raises(ValueError, match="needs at least one array"):
        train_val_test_split()
