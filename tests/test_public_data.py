"""Tests of mrl.public_data: formula parsing, conversions, wheel handling (fake wheels, no network) and, when the real
wheels are cached on this machine, the published sizes and splits."""
from __future__ import annotations

import io
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import KFold

from mrl import elements, wheels
from mrl import public_data as ds

FIXTURES = Path(__file__).parent / "fixtures"
REAL_WHEELS = wheels.cache_dir() / "wheels"
HAVE_CRABNET = (REAL_WHEELS / "crabnet-2.0.8-py3-none-any.whl").exists()
HAVE_GPVISC = (REAL_WHEELS / "gpvisc-0.3.5-py3-none-any.whl").exists()
needs_crabnet = pytest.mark.skipif(not HAVE_CRABNET, reason=f"crabnet-2.0.8 wheel not cached in {REAL_WHEELS} "
                                   "(run mrl.wheels.fetch_wheel('crabnet', '2.0.8') with registry access)")
needs_gpvisc = pytest.mark.skipif(not HAVE_GPVISC, reason=f"gpvisc-0.3.5 wheel not cached in {REAL_WHEELS} "
                                  "(run mrl.wheels.fetch_wheel('gpvisc', '0.3.5') with registry access)")


# ----- fake wheels with the real member layout ----------------------------------------------------------------
def _melt_hdf5(frame: pd.DataFrame) -> bytes:
    import h5py

    buf = io.BytesIO()
    with h5py.File(buf, "w") as h5:
        h5["X_columns"] = np.array([o.lower() for o in ds.MELT_OXIDES] + ["Tetra", "nbot"], dtype="S")
        for key, split in (("train", "train"), ("valid", "valid"), ("test", "test")):
            part = frame[frame["split"] == split]
            x = part[list(ds.MELT_OXIDES)].to_numpy(np.float64)
            h5[f"X_{key}"] = np.column_stack([x, np.ones((len(x), 2))])  # extra columns, as in gpvisc
            h5[f"T_{key}"] = part[["T"]].to_numpy(np.float64)
            h5[f"P_{key}"] = part[["P"]].to_numpy(np.float64)
            h5[f"y_{key}"] = part[["viscosity"]].to_numpy(np.float64)
            h5[f"Name_{key}"] = part[["Name"]].to_numpy().astype("S")
    return buf.getvalue()


def make_fake_wheels(folder: Path) -> dict[str, Path]:
    """crabnet/gpvisc wheels holding the tiny fixtures under the real member names."""
    folder.mkdir(parents=True, exist_ok=True)
    crabnet = folder / "crabnet-2.0.8-py3-none-any.whl"
    tiny = (FIXTURES / "matbench_tiny.csv").read_bytes()
    with zipfile.ZipFile(crabnet, "w") as zf:
        for task in ("steels_yield", "expt_gap", "mp_e_form"):
            zf.writestr(f"crabnet/data/matbench/{task}.csv", tiny)
        zf.writestr("crabnet/data/element_properties/magpie.csv", (FIXTURES / "magpie_tiny.csv").read_bytes())
    gpvisc = folder / "gpvisc-0.3.5-py3-none-any.whl"
    with zipfile.ZipFile(gpvisc, "w") as zf:
        zf.writestr("gpvisc/data/all_viscosity.hdf5", _melt_hdf5(pd.read_csv(FIXTURES / "melt_tiny.csv")))
        for i in (1, 2, 3):
            zf.writestr(f"gpvisc/models/GP_model{i}/metrics.csv", (FIXTURES / "gp_metrics.csv").read_bytes())
    return {"crabnet": crabnet, "gpvisc": gpvisc}


@pytest.fixture
def fake_cache(tmp_path, monkeypatch):
    """MRL_CACHE pointing at a temporary folder with the fake wheels; pip must not be called."""
    monkeypatch.setenv("MRL_CACHE", str(tmp_path / "cache"))
    make_fake_wheels(tmp_path / "cache" / "wheels")

    def no_network(*args, **kwargs):
        raise AssertionError(f"unexpected subprocess call {args}")

    monkeypatch.setattr(subprocess, "run", no_network)
    return tmp_path / "cache"


# ----- formula parsing ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("formula, expected", [
    ("Al2O3", {"Al": 2.0, "O": 3.0}),
    ("Fe0.620C0.000953Mn0.000521", {"Fe": 0.62, "C": 0.000953, "Mn": 0.000521}),
    ("(Fe2O3)0.5", {"Fe": 1.0, "O": 1.5}),
    ("Ag(W3Br7)2", {"Ag": 1.0, "W": 6.0, "Br": 14.0}),
    ("K[Fe(CN)6]", {"K": 1.0, "Fe": 1.0, "C": 6.0, "N": 6.0}),
    ("Ca(Al(SiO3)2)0.5", {"Ca": 1.0, "Al": 0.5, "Si": 1.0, "O": 3.0}),
    ("FeFe2", {"Fe": 3.0}),
    ("Fe1e-05C2", {"Fe": 1e-05, "C": 2.0}),
    (" Fe2 O3 ", {"Fe": 2.0, "O": 3.0}),
    ("Es2", {"Es": 2.0}),
])
def test_parse_formula(formula, expected):
    got = elements.parse_formula(formula)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-12)


@pytest.mark.parametrize("junk, message", [
    ("", "empty"), ("Xx2", "unknown element 'Xx'"), ("(Fe2", "unclosed"), ("Fe)2", "unbalanced"),
    ("(Fe2]", "unbalanced"), ("2Fe", "does not follow"), ("Fe-2", "unexpected '-'"), ("Al2O3!", "unexpected '!'"),
    ("()2", "empty brackets"), ("fe2o3", "unexpected 'f'"), ("Fe2 3", "does not follow"),
])
def test_parse_formula_junk(junk, message):
    with pytest.raises(ValueError, match=message):
        elements.parse_formula(junk)


def test_formulas_to_long_sums_to_one():
    frame = pd.read_csv(FIXTURES / "matbench_tiny.csv")
    long = elements.formulas_to_long(frame["formula"])
    assert list(long.columns) == ["formula_id", "material_id", "content"]
    assert list(pd.unique(long["formula_id"])) == ["0", "1", "2", "3", "4", "5"]
    np.testing.assert_allclose(long.groupby("formula_id")["content"].sum(), 1.0, atol=1e-12)
    alumina = long[long["formula_id"] == "1"].set_index("material_id")["content"]
    assert alumina.to_dict() == pytest.approx({"Al": 0.4, "O": 0.6})
    ids = elements.formulas_to_long(["NaCl", "KCl"], ids=["a", "b"])
    assert set(ids["formula_id"]) == {"a", "b"}
    assert elements.formulas_to_long([f"Fe{i + 1}" for i in range(11)])["formula_id"].iloc[0] == "00"
    with pytest.raises(ValueError, match="formula 1 .*unknown element"):
        elements.formulas_to_long(["NaCl", "Qq"])
    with pytest.raises(ValueError, match="no positive amount"):
        elements.formulas_to_long(["Fe0"])
    with pytest.raises(ValueError, match="not unique"):
        elements.formulas_to_long(["NaCl", "KCl"], ids=["a", "a"])


def test_periodic_table():
    table = elements.periodic_table().set_index("material_id")
    assert len(table) == 118 and table["Z"].is_monotonic_increasing
    assert table.loc["Fe", ["group", "period", "block", "family"]].tolist() == [8, 4, "d", "transition metal"]
    assert table.loc["Hg", "group"] == 12 and table.loc["Tl", "group"] == 13 and table.loc["Rn", "group"] == 18
    assert table.loc["La", "block"] == "f" and table.loc["Hf", "group"] == 4 and table.loc["Lr", "family"] == "actinide"
    assert table.loc["Si", "family"] == "metalloid" and table.loc["Na", "family"] == "alkali metal"


# ----- wheels -------------------------------------------------------------------------------------------------
def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("MRL_CACHE", str(tmp_path))
    assert wheels.cache_dir() == tmp_path
    monkeypatch.delenv("MRL_CACHE")
    assert wheels.cache_dir() == Path.home() / ".cache" / "mrl"


def test_fetch_wheel_uses_cache(fake_cache):
    path = wheels.fetch_wheel("crabnet", "2.0.8")
    assert path == fake_cache / "wheels" / "crabnet-2.0.8-py3-none-any.whl"
    assert wheels.read_wheel_member(path, "crabnet/data/matbench/steels_yield.csv").startswith(b"formula,target")
    with pytest.raises(KeyError, match="no member"):
        wheels.read_wheel_member(path, "crabnet/nothing.csv")


def test_fetch_wheel_downloads_with_pip(tmp_path, monkeypatch):
    monkeypatch.setenv("MRL_CACHE", str(tmp_path))
    calls = []

    def fake_pip(cmd, **kwargs):
        calls.append(cmd)
        dest = Path(cmd[cmd.index("-d") + 1])
        with zipfile.ZipFile(dest / "some_pkg-1.0-py3-none-any.whl", "w") as zf:
            zf.writestr("some_pkg/data.txt", "hello")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_pip)
    path = wheels.fetch_wheel("some-pkg", "1.0")
    assert path == tmp_path / "wheels" / "some_pkg-1.0-py3-none-any.whl"
    assert wheels.read_wheel_member(path, "some_pkg/data.txt") == b"hello"
    assert calls[0][1:6] == ["-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    assert calls[0][-1] == "some-pkg==1.0"
    assert wheels.fetch_wheel("some_pkg", "1.0") == path and len(calls) == 1  # second call: no download
    assert [p.name for p in (tmp_path / "wheels").iterdir()] == [path.name]  # temporary folder removed


def test_fetch_wheel_checks_sha(tmp_path, monkeypatch):
    monkeypatch.setenv("MRL_CACHE", str(tmp_path))

    def fake_pip(cmd, **kwargs):
        assert "--python-version" in cmd and cmd[cmd.index("--python-version") + 1] == "3.10"
        dest = Path(cmd[cmd.index("-d") + 1])
        (dest / "crabnet-2.0.8-py3-none-any.whl").write_bytes(b"not the real wheel")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_pip)
    with pytest.raises(RuntimeError, match="SHA-256"):
        wheels.fetch_wheel("crabnet", "2.0.8")
    assert not list((tmp_path / "wheels").glob("*.whl"))


def test_fetch_wheel_offline_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MRL_CACHE", str(tmp_path))
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(
        cmd, 1, "", "ERROR: Could not find a version that satisfies the requirement gpvisc==0.3.5"))
    with pytest.raises(RuntimeError, match=r"(?s)could not download gpvisc==0\.3\.5.*pip download --no-deps.*"
                                           r"gpvisc==0\.3\.5"):
        wheels.fetch_wheel("gpvisc", "0.3.5")


# ----- conversions on fake wheels -----------------------------------------------------------------------------
def test_registry_cards():
    cards = ds.list_datasets()
    assert set(cards["name"]) == {"matbench_steels", "matbench_expt_gap", "mp_e_form", "melt_viscosity",
                                  "liquid_viscosity"}
    assert cards["citation"].str.len().min() > 50 and cards["license"].str.len().min() > 20
    melt = ds.DATASETS["melt_viscosity"]
    assert "2409.20235" in melt.citation and "GPL-3" in melt.license and "wheel" in melt.license
    assert melt.conditions == ("T", "P")
    with pytest.raises(KeyError, match="known"):
        ds.load_dataset("nope")


def test_matbench_conversion(fake_cache):
    data = ds.load_dataset("matbench_steels", use_cache=False)
    frame = pd.read_csv(FIXTURES / "matbench_tiny.csv")
    assert data.targets == ("yield_strength",) and data.conditions == () and data.name == "matbench_steels"
    assert data.n_samples == 6 and data.n_formulas == 6
    assert data.properties["formula"].tolist() == frame["formula"].tolist()  # dataset order kept
    np.testing.assert_allclose(data.target_values(), frame["target"])
    np.testing.assert_allclose(np.asarray(data.content_matrix().sum(axis=1)).ravel(), 1.0)
    mats = data.materials
    assert mats["material_id"].tolist() == sorted(mats["material_id"], key=elements.ATOMIC_NUMBER.get)
    assert {"name", "family", "group", "period", "block", "Z"} <= set(mats.columns)
    assert mats.set_index("material_id").loc["Fe", "name"] == "Iron"
    row = data.content_matrix()[data.sample_rows()[2]].toarray().ravel()  # (Fe2O3)0.5
    ids = list(data.material_ids)
    assert row[ids.index("Fe")] == pytest.approx(0.4) and row[ids.index("O")] == pytest.approx(0.6)
    assert ds.load_dataset("matbench_expt_gap", use_cache=False).targets == ("band_gap",)
    assert ds.load_dataset("mp_e_form", use_cache=False).targets == ("e_form",)


def test_load_dataset_parquet_cache(fake_cache):
    first = ds.load_dataset("matbench_expt_gap")
    folder = fake_cache / "datasets" / f"matbench_expt_gap-v{ds.CONVERSION_VERSION}"
    assert (folder / "done.json").exists() and (folder / "formulas.parquet").exists()
    for wheel in (fake_cache / "wheels").glob("*.whl"):
        wheel.unlink()  # the second load must not need the wheel
    second = ds.load_dataset("matbench_expt_gap")
    pd.testing.assert_frame_equal(first.properties, second.properties)
    pd.testing.assert_frame_equal(first.formulas, second.formulas)
    assert first.materials["material_id"].tolist() == second.materials["material_id"].tolist()
    assert second.targets == ("band_gap",)


def test_melt_conversion(fake_cache):
    data = ds.load_dataset("melt_viscosity", use_cache=False)
    assert data.targets == ("viscosity",) and data.conditions == ("T", "P")
    assert data.material_ids.tolist() == list(ds.MELT_OXIDES)
    props = data.properties
    assert {"formula_id", "viscosity", "T", "P", "split", "group"} <= set(props.columns)
    assert data.n_samples == 11
    # A at three temperatures is one formula; the A row with different fractions is a second formula "A#2"
    assert data.n_formulas == 5
    assert props["formula_id"].tolist()[:6] == ["A", "A", "A", "B", "B", "A#2"]
    assert props.loc[props["formula_id"] == "A", "T"].tolist() == [900, 1000, 1400]
    assert (props.loc[props["formula_id"] == "A#2", "group"] == "A").all()
    assert props["split"].tolist() == ["train"] * 6 + ["eval"] * 2 + ["test"] * 3
    assert sorted(props.loc[props["formula_id"] == "B", "split"]) == ["test", "train", "train"]
    np.testing.assert_allclose(data.condition_values()[-3:], [[1300, 2.0], [1700, 2.0], [1300, 0.0]])
    np.testing.assert_allclose(np.asarray(data.content_matrix().sum(axis=1)).ravel(), 1.0)
    comp_a = data.formulas[data.formulas["formula_id"] == "A"].set_index("material_id")["content"]
    assert comp_a.to_dict() == pytest.approx({"SiO2": 0.75, "Na2O": 0.25})
    coarse = ds.load_dataset("melt_viscosity", decimals=3)  # A and A#2 merge at 3 decimals
    assert coarse.n_formulas == 4
    metrics = ds.published_gp_metrics()
    assert metrics["model"].tolist() == ["GP_model1", "GP_model2", "GP_model3"]
    assert list(metrics.columns) == ["model", "train", "test", "handtest"]


def test_element_table_fake(fake_cache):
    table = elements.element_table("magpie")
    assert table.index.name == "element" and table.loc["Fe", "Number"] == 26
    assert np.isnan(table.loc["Fe", "MeltingT"])  # NaNs are kept here
    with pytest.raises(ValueError, match="unknown element table"):
        elements.element_table("nope")


def test_matbench_folds_match_kfold(fake_cache):
    data = ds.load_dataset("matbench_steels", use_cache=False)
    folds = ds.matbench_folds(data)
    ref = list(KFold(n_splits=5, shuffle=True, random_state=18012019).split(np.zeros(6)))
    assert len(folds) == 5
    for (tr, te), (rtr, rte) in zip(folds, ref):
        np.testing.assert_array_equal(tr, rtr)
        np.testing.assert_array_equal(te, rte)
    assert sorted(np.concatenate([te for _, te in folds]).tolist()) == list(range(6))


# ----- real wheels (skipped when not cached) ------------------------------------------------------------------
@needs_crabnet
def test_real_matbench_sizes_and_folds():
    steels = ds.load_dataset("matbench_steels", use_cache=False)
    assert steels.n_samples == 312 and steels.n_materials == 14
    gap = ds.load_dataset("matbench_expt_gap", use_cache=False)
    assert gap.n_samples == 4604 and gap.n_formulas == 4604
    # our folds reproduce the CrabNet copy of the Matbench folds for steels, row for row
    wheel = wheels.fetch_wheel("crabnet", "2.0.8")
    for k, (_, test) in enumerate(ds.matbench_folds(steels)):
        ref = pd.read_csv(io.BytesIO(wheels.read_wheel_member(wheel, f"crabnet/data/matbench_cv/steels_yield/test{k}.csv")))
        assert steels.properties["formula"].iloc[test].tolist() == ref["formula"].tolist()
    for name in elements.ELEMENT_TABLES:
        table = elements.element_table(name)
        assert len(table) >= 80 and table.shape[1] >= 20 and "Fe" in table.index


@needs_crabnet
def test_real_mp_e_form_size():
    wheel = wheels.fetch_wheel("crabnet", "2.0.8")
    frame = pd.read_csv(io.BytesIO(wheels.read_wheel_member(wheel, ds.DATASETS["mp_e_form"].member)))
    assert len(frame) == ds.DATASETS["mp_e_form"].n_samples == 132752
    head = ds.matbench_from_frame(frame.iloc[:5000], "e_form")  # full conversion takes seconds: a sample here
    assert head.n_samples == 5000 and head.targets == ("e_form",)


@needs_gpvisc
def test_real_melt_viscosity_split():
    data = ds.load_dataset("melt_viscosity", use_cache=False)
    props = data.properties
    assert data.n_samples == 28898 and data.n_formulas == 8013
    assert props["split"].value_counts().to_dict() == {"train": 22673, "eval": 3249, "test": 2976}
    wheel = wheels.fetch_wheel("gpvisc", "0.3.5")
    n_csv = sum(len(pd.read_csv(io.BytesIO(wheels.read_wheel_member(wheel, f"gpvisc/data/{m}"))))
                for m in ("dataset+sciglass_lp.csv", "dataset_hp.csv"))
    assert n_csv == data.n_samples  # the hdf5 split covers lp + hp
    train_names = set(props.loc[props["split"] == "train", "group"])
    test_names = set(props.loc[props["split"] == "test", "group"])
    assert len(test_names) == 630 and len(test_names & train_names) == 66
    gp = ds.published_gp_metrics()
    assert gp["test"].between(0.4, 0.5).all()
