"""make_ratings, load_csv and the command line."""

import json
import subprocess
import sys

import numpy as np
import pytest

from mfsgd import _cli
from mfsgd.datasets import load_csv, make_ratings


def test_make_ratings_shape_and_distinct_pairs():
    u, i, r = make_ratings(500, 300, 20_000, random_state=0, as_frame=False)
    assert len(u) == len(i) == len(r) == 20_000
    assert u.dtype == np.int32 and r.dtype == np.float32
    assert u.min() >= 0 and u.max() < 500 and i.max() < 300
    assert len(np.unique(u.astype(np.int64) * 300 + i)) == 20_000


def test_make_ratings_is_heavy_tailed_and_reproducible():
    u, i, r = make_ratings(5000, 2000, 200_000, random_state=1, as_frame=False)
    per_user = np.bincount(u, minlength=5000)
    per_item = np.bincount(i, minlength=2000)
    assert per_user.max() > 8 * np.median(per_user)
    assert per_item.max() > 20 * np.median(per_item)
    u2, i2, r2 = make_ratings(5000, 2000, 200_000, random_state=1, as_frame=False)
    np.testing.assert_array_equal(r, r2)


def test_make_ratings_truth_reproduces_ratings_up_to_noise():
    (u, i, r), t = make_ratings(200, 100, 5000, noise=0.0, random_state=2, as_frame=False,
                                return_truth=True)
    pred = t["mu"] + t["user_bias"][u] + t["item_bias"][i] + np.einsum(
        "ij,ij->i", t["user_factors"][u], t["item_factors"][i])
    np.testing.assert_allclose(pred, r, rtol=1e-5)


def test_make_ratings_dense_and_errors():
    u, i, r = make_ratings(10, 10, 100, random_state=0, as_frame=False)
    assert len(np.unique(u * 10 + i)) == 100
    with pytest.raises(ValueError, match="n_ratings must be at most"):
        make_ratings(10, 10, 101)


def test_make_ratings_frame():
    pd = pytest.importorskip("pandas")
    df = make_ratings(50, 40, 300, random_state=0)
    assert isinstance(df, pd.DataFrame) and list(df.columns) == ["user", "item", "rating"]


@pytest.mark.parametrize("text,kw", [
    ("userId,movieId,rating,timestamp\n1,10,4.0,5\n2,10,3.5,6\n1,20,1,7\n", {}),
    ("user\titem\trating\n1\t10\t4.0\n2\t10\t3.5\n1\t20\t1\n", {}),
    ("1\t10\t4\t99\n2\t10\t3.5\t98\n1\t20\t1\t97\n", {}),
    ("ts;who;what;stars\n5;1;10;4\n6;2;10;3.5\n7;1;20;1\n", {"columns": ("who", "what", "stars")}),
    ("5|1|10|4\n6|2|10|3.5\n7|1|20|1\n", {"columns": (1, 2, 3)}),
])
def test_load_csv_forms(tmp_path, text, kw):
    p = tmp_path / "r.csv"
    p.write_text(text)
    u, i, r = load_csv(p, as_frame=False, **kw)
    assert list(np.asarray(u).astype(int)) == [1, 2, 1]
    assert list(np.asarray(i).astype(int)) == [10, 10, 20]
    np.testing.assert_allclose(r, [4, 3.5, 1])


def test_load_csv_errors(tmp_path):
    p = tmp_path / "r.csv"
    p.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(ValueError, match="no user column"):
        load_csv(p)
    with pytest.raises(ValueError, match="no column 'zz'"):
        load_csv(p, columns=("a", "b", "zz"))
    p.write_text("1,2,3\n1,3,x\n")
    with pytest.raises(ValueError, match="line 2 has a missing or non-numeric rating"):
        load_csv(p, header=False)
    with pytest.raises(FileNotFoundError):
        load_csv(tmp_path / "missing.csv")


def test_cli_train_info_predict(tmp_path, capsys):
    u, i, r = make_ratings(100, 50, 2000, random_state=0, as_frame=False)
    data = tmp_path / "r.tsv"
    np.savetxt(data, np.column_stack([u, i, r]), fmt=["%d", "%d", "%.3f"], delimiter="\t")
    model = tmp_path / "m.mfsgd"
    assert _cli.main(["train", str(data), "-o", str(model), "--factors", "4", "--epochs", "3",
                      "--seed", "0", "-q", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ratings"] == 2000 and model.exists()
    assert _cli.main(["info", str(model), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["n_factors"] == 4 and info["epochs"] == 3
    assert _cli.main(["predict", str(model), str(u[0]), str(i[0]), "--json"]) == 0
    pred = json.loads(capsys.readouterr().out)
    assert pred["user_known"] and np.isfinite(pred["prediction"])


def test_cli_user_mistakes_print_one_line(tmp_path, capsys):
    assert _cli.main(["info", str(tmp_path / "nope.mfsgd")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error" in err and "Traceback" not in err
    (tmp_path / "junk").write_bytes(b"junk")
    assert _cli.main(["predict", str(tmp_path / "junk"), "1", "2"]) == 2
    assert "not a valid mfsgd model file" in capsys.readouterr().err


def test_demo_runs_as_a_module():
    out = subprocess.run([sys.executable, "-m", "mfsgd", "demo", "--ratings", "20000",
                          "--users", "500", "--items", "200", "--json"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["test_rmse"] < 1.0 and len(res["history"]) == 20


def test_cli_recommend(tmp_path, capsys):
    u, i, r = make_ratings(100, 50, 2000, random_state=0, as_frame=False)
    model = tmp_path / "m.mfsgd"
    from mfsgd import MatrixFactorization

    MatrixFactorization(n_factors=4, n_epochs=3, random_state=0).fit((u, i, r)).save(model)
    assert _cli.main(["recommend", str(model), str(u[0]), "-n", "4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["recommendations"]) == 4 and out["known"]
    assert not {x["item"] for x in out["recommendations"]} & set(i[u == u[0]].tolist())
    assert _cli.main(["recommend", str(model), "999999"]) == 2
    assert "not in the model" in capsys.readouterr().err
    assert _cli.main(["recommend", str(model), "999999", "--allow-unknown", "-n", "2"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2


def test_cli_plot_and_progress(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "curve.png"
    assert _cli.main(["demo", "--ratings", "5000", "--users", "200", "--items", "100",
                      "--epochs", "3", "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    captured = capsys.readouterr()
    assert "test RMSE" in captured.out


def test_fit_callback_sees_each_epoch_and_can_stop(small_data):
    from mfsgd import MatrixFactorization

    rows = []
    MatrixFactorization(n_factors=2, n_epochs=4, random_state=0).fit(small_data,
                                                                     callback=rows.append)
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]

    def stop_after_two(row):
        if row["epoch"] == 2:
            raise RuntimeError("enough")

    m = MatrixFactorization(n_factors=2, n_epochs=9, random_state=0)
    with pytest.raises(RuntimeError, match="enough"):
        m.fit(small_data, callback=stop_after_two)
    assert m.n_epochs_ == 2


def test_plot_history_draws_both_curves(small_data, tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    from mfsgd import MatrixFactorization, plot_history

    u, i, r = small_data
    m = MatrixFactorization(n_factors=2, n_epochs=3, random_state=0).fit(
        (u[:5000], i[:5000], r[:5000]), eval_set=(u[5000:], i[5000:], r[5000:]))
    ax = plot_history(m, path=tmp_path / "h.png")
    assert len(ax.lines) == 2 and (tmp_path / "h.png").exists()


def test_cli_evaluate(tmp_path, capsys):
    u, i, r = make_ratings(200, 80, 4000, random_state=0, as_frame=False)
    data = tmp_path / "r.csv"
    np.savetxt(data, np.column_stack([u, i, r]), fmt=["%d", "%d", "%.3f"], delimiter=",",
               header="user,item,rating", comments="")
    assert _cli.main(["evaluate", str(data), "--cv", "3", "--factors", "4", "--epochs", "3",
                      "--seed", "0", "--metrics", "rmse,mae,ndcg@5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["folds"]["test_rmse"]) == 3 and 0 < out["mean"]["test_rmse"] < 2
    assert "test_ndcg@5" in out["folds"]
    assert _cli.main(["evaluate", str(data), "--columns", "a,b,c"]) == 2
    assert "no column 'a'" in capsys.readouterr().err


def test_cli_demo_movielens_offline_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MFSGD_DATA", str(tmp_path))
    monkeypatch.setenv("MFSGD_MOVIELENS_URL", "http://127.0.0.1:9/")  # nothing listens
    assert _cli.main(["demo", "--movielens", "100k"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("mfsgd demo: error:") and "127.0.0.1:9" in err[-1]
    assert not any("Traceback" in line for line in err)
