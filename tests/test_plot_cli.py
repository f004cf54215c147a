import matplotlib.colors
import matplotlib.image
import numpy as np
import pytest

import jaxbo
from jaxbo import cli, plot

SMALL = ["--set", "n_train=10", "--set", "T=5", "--set", "n_test=32", "--set", "steps=20", "--set", "log_every=10"]


def test_cell_edges():
    np.testing.assert_allclose(plot.cell_edges(np.array([1.0, 2.0, 4.0])), [1.0, 1.5, 3.0, 4.0])  # ends at the data
    np.testing.assert_allclose(plot.cell_edges(np.array([7.0])), [6.5, 7.5])


def test_phase_diagram_scales_name_the_model_and_end_cells_at_the_data():
    result = jaxbo.sweep(
        {"d": [20, 60], "signal_norm": [2.0, 30.0], "noise_rate": [0.0, 0.3]},
        seeds=2,
        config=jaxbo.Config(n_train=10, T=4, n_test=32, steps=30, log_every=10),
        progress=False,
    )
    figure = plot.phase_diagram(result, metrics=("train_accuracy", "train_loss", "regime"))
    meshes = {}
    for axis in figure.axes:
        if axis.get_title() and axis.collections:
            meshes.setdefault(axis.get_title().split(" (")[0], []).append(axis.collections[0])
    accuracy, loss = meshes["train accuracy"], meshes["train loss"]
    # Accuracies on a fixed [0, 1] scale: a panel of perfect accuracy gets the top colour, not the bottom one.
    assert all((mesh.norm.vmin, mesh.norm.vmax) == (0.0, 1.0) for mesh in accuracy)
    values = np.asarray(accuracy[0].get_array()).ravel()
    perfect = values == 1.0
    assert perfect.any()
    assert np.allclose(accuracy[0].to_rgba(values[perfect]), accuracy[0].cmap(1.0))
    # Both rows (η = 0 and η = 0.3) share the loss scale, which spans both rows' data.
    assert len(loss) == 2 and loss[0].norm.vmin == loss[1].norm.vmin and loss[0].norm.vmax == loss[1].norm.vmax
    both = result.mean("train_loss")
    assert loss[0].norm.vmin <= np.percentile(both, 1) + 1e-9 and loss[0].norm.vmax >= np.percentile(both, 99) - 1e-9
    # Cells end at the grid's first and last values: nothing drawn at d < 20 or ‖μ‖ < 2.
    axis = next(axis for axis in figure.axes if axis.get_title().startswith("train loss"))
    coordinates = axis.collections[0].get_coordinates()
    assert coordinates[..., 0].min() == 20 and coordinates[..., 1].min() == 2.0
    assert figure.get_suptitle().startswith("attention model (W = I, p trained)")


def test_a_constant_loss_panel_gets_a_readable_range_centred_on_its_value():
    low, high = plot._colour_range("train_loss", np.full((3, 3), 0.45))
    assert low < 0.45 < high and np.isclose((low + high) / 2, 0.45) and high - low > 0.01


def test_cli_sweep_writes_data_and_a_phase_diagram(tmp_path, capsys):
    status = cli.main(
        [
            "sweep",
            "--d",
            "40:400:3",
            "--signal-norm",
            "5,50",
            "--seeds",
            "2",
            "--out",
            str(tmp_path),
            "--quiet",
            "--axis",
            "noise_rate=0.1,0.2",
            *SMALL,
        ]
    )
    assert status == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(tmp_path / f"phase_diagram.{ext}") for ext in ("npz", "json", "png")]
    image = matplotlib.image.imread(tmp_path / "phase_diagram.png")
    assert image.shape[0] > 300 and image.shape[1] > 1000 and image[..., :3].std() > 0.05
    result = jaxbo.load(tmp_path / "phase_diagram")
    assert result.dims == ("d", "signal_norm", "noise_rate", "seed")
    np.testing.assert_array_equal(result.coords["d"], [40, 220, 400])
    # One row of panels per η, each titled with its own η; the suptitle names no η (it is not fixed).
    figure = plot.phase_diagram(result)
    titles = [axis.get_title() for axis in figure.axes if axis.get_title()]
    assert len(titles) == 6 and sum("(η=0.1)" in t for t in titles) == 3 and sum("(η=0.2)" in t for t in titles) == 3
    assert "η" not in figure._suptitle.get_text() and "n=10" in figure._suptitle.get_text()
    assert image.shape[0] > 1.8 * matplotlib.image.imread(_single_row(result, tmp_path)).shape[0]
    selected = plot.phase_diagram(result, select={"noise_rate": 0.2})
    assert all("(η=0.2)" in axis.get_title() for axis in selected.axes if axis.get_title())
    with pytest.raises(ValueError, match="not a grid value"):
        plot.phase_diagram(result, select={"noise_rate": 0.3})


def _single_row(result, tmp_path):
    path = tmp_path / "single.png"
    plot.phase_diagram(result, select={"noise_rate": 0.1}).savefig(path, dpi=120)
    return path


def test_cli_help_version_and_argument_errors(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(["sweep", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # unwrap: the terminal width decides the line breaks
    assert "(default: 250:5000:20)" in text and "`" not in text and "flips=balanced" in text and "example:" in text
    parser = cli.build_parser("jaxbo")
    for command in parser.commands.values():
        assert all(action.help for action in command._actions), "every option has a help line"
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert capsys.readouterr().out.strip() == f"jaxbo-attention {jaxbo.__version__}"
    out = tmp_path / "never"
    # A negative range start parses, then fails validation with the sub-command's usage; --out is not created.
    assert cli.main(["sweep", "--d", "-100:500:3", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: ") and "sweep" in err.splitlines()[0] and "Config.d = -100 is out of range" in err
    assert not out.exists()
    assert cli.main(["sweep", "--set", "d=300", "--out", str(out)]) == 2
    assert "names a grid axis" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--d", "250.5"], "--d 250.5: grid['d'] = [250.5] must hold whole numbers >= 2"),
        (["--d", "250,250"], "--d 250,250: grid['d'] = [250.0, 250.0] repeats a value"),
        (["--d", "nan"], "--d nan: grid['d'] = [nan] must hold whole numbers >= 2"),
        (["--signal-norm", "nan"], "--signal-norm nan: grid['signal_norm'] holds an invalid value: Config.signal_norm"),
        (["--d", "2:4:10"], "--d 2:4:10: its 10 points round to repeated whole d; use fewer points"),
        (["--signal-norm", "5", "--paired"], "--paired shares each seed's draws across the values of ‖μ‖"),
        (["--axis", "noise_rate="], "'--axis noise_rate=': expected start:stop:num"),
        (["--axis", "dim=1,2"], "grid key 'dim' cannot be swept: allowed keys are"),
        (["--d", "40", "--axis", "d=50"], "d is given twice (--d and --axis d=): give it once"),
    ],
)
def test_cli_grid_refuses_what_the_python_api_refuses_in_its_words(argv, words, tmp_path, capsys):
    out = tmp_path / "never"
    try:
        status = cli.main(["sweep", *argv, "--out", str(out)])
    except SystemExit as exit_:  # argparse's own refusals exit 2 with the usage
        status = exit_.code
    err = " ".join(capsys.readouterr().err.split())
    assert status == 2 and words in err and not out.exists(), err
    assert "--noise-rate" not in err and "cannot convert" not in err


def test_cli_grid_axes_d_and_signal_norm_may_come_from_axis(monkeypatch, tmp_path):
    seen = {}

    def fake_sweep(grid, **kwargs):
        seen.update(grid=grid)
        raise KeyboardInterrupt

    import importlib

    monkeypatch.setattr(importlib.import_module("jaxbo.sweep"), "sweep", fake_sweep)
    argv = ["sweep", "--axis", "d=40,60", "--axis", "signal_norm=5:10:2", "--axis", "noise_rate=0.1,0.2"]
    assert cli.main([*argv, "--out", str(tmp_path)]) == 130
    assert seen["grid"] == {"d": [40.0, 60.0], "signal_norm": [5.0, 10.0], "noise_rate": [0.1, 0.2]}
    with pytest.raises(ValueError, match="repeats a value"):  # the same refusal from Python, the same words
        jaxbo.sweep({"d": [250, 250]}, progress=False)


def test_cli_run_writes_dynamics_and_errors_are_clear(tmp_path, capsys):
    assert cli.main(["run", "--out", str(tmp_path), "--quiet", "--set", "d=300", *SMALL]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "dynamics.png")
    assert cli.main(["run", "--out", str(tmp_path), "--set", "d=300", *SMALL]) == 0  # again: it says it replaces
    assert f"replacing {tmp_path / 'dynamics.png'} from an earlier command" in capsys.readouterr().err
    assert matplotlib.image.imread(tmp_path / "dynamics.png")[..., :3].std() > 0.05
    assert cli.main(["sweep", "--out", str(tmp_path), "--set", "noise_rate=0.7"]) == 2
    assert "Config.noise_rate = 0.7" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["sweep", "--d", "1:2"])
    assert "expected start:stop:num" in capsys.readouterr().err


def test_dynamics_needs_one_run():
    config = jaxbo.Config(n_train=10, T=5, d=50, n_test=16, steps=20, log_every=10)
    import jax

    batch = jax.jit(jax.vmap(jaxbo.make_run(config)))(jax.random.split(jax.random.key(0), 2))
    with pytest.raises(ValueError, match="one run"):
        plot.dynamics(batch)
    assert repr(batch).startswith("Run(engine='reduced', 20 steps") and "batch of (2,) runs" in repr(batch)
    assert len(repr(batch)) < 400


def hand_made_result(seeds: int = 2) -> jaxbo.SweepResult:
    """A geometric 4 × 3 grid whose test accuracies are chosen: (d=10², ‖μ‖=1) ties benign against harmful,
    (d=10³, ‖μ‖=1) is harmful at 0.98 in every seed, the rest is benign at 1.0."""
    d, mu = np.array([100, 1000, 10_000, 100_000]), np.array([1.0, 10.0, 100.0])
    test = np.ones((4, 3, seeds))
    test[0, 0, -1] = 0.98
    test[1, 0, :] = 0.98
    final = {"train_accuracy": np.ones((4, 3, seeds)), "test_accuracy": test, "noisy_fit": np.ones((4, 3, seeds))}
    return jaxbo.SweepResult(
        dims=("d", "signal_norm", "seed"),
        coords={"d": d, "signal_norm": mu, "seed": np.arange(seeds)},
        final=final,
        history={},
        log_steps=np.zeros(0, np.int64),
        config=jaxbo.Config(),
        metadata={"engine": "reduced"},
    )


def panel(figure, title: str):
    return next(axis for axis in figure.axes if axis.get_title().startswith(title))


def test_regime_panel_draws_ties_as_ties():
    result = hand_made_result()
    assert result.tied()[0, 0] and result.regime_counts()["tied"] == 1
    figure = plot.phase_diagram(result)
    mesh = panel(figure, "regime").collections[0]
    drawn = np.asarray(mesh.get_array()).reshape(3, 4)  # (‖μ‖, d)
    assert drawn[0, 0] == plot.TIE and drawn[0, 1] == 1 and drawn[1, 1] == 0
    grey = mesh.cmap(mesh.norm(plot.TIE))
    assert np.allclose(grey[:3], matplotlib.colors.to_rgb(plot.PANEL_COLOURS[plot.TIE]))
    assert not np.allclose(grey, mesh.cmap(mesh.norm(0)))  # a tie is not drawn as benign
    colour_bar = next(axis for axis in figure.axes if [t.get_text() for t in axis.get_yticklabels()][-1:] == ["tie"])
    assert [t.get_text() for t in colour_bar.get_yticklabels()] == [*jaxbo.theory.REGIME_NAMES, "tie"]


def test_test_accuracy_scale_shows_the_harmful_drop_and_marks_the_threshold():
    result = hand_made_result()
    figure = plot.phase_diagram(result)
    mesh = panel(figure, "test accuracy").collections[0]
    assert mesh.norm.vcenter == pytest.approx(1 - result.regime_tolerance) and mesh.norm.vmax == 1.0
    harmful, benign = mesh.to_rgba(0.98), mesh.to_rgba(1.0)
    assert np.abs(np.subtract(harmful, benign)).max() > 0.3  # on [0, 1] both were one yellow
    assert np.abs(np.subtract(mesh.to_rgba(0.994), mesh.to_rgba(0.996))).max() > 0.05  # either side of 1 − ε
    labels = [axis.get_ylabel() for axis in figure.axes]
    assert any("1 − ε = 0.995" in label for label in labels)


def test_geometric_axes_are_ticked_at_grid_values_in_plain_numbers():
    figure = plot.phase_diagram(hand_made_result())
    axis = panel(figure, "train accuracy")
    assert axis.get_xscale() == "log" and axis.get_yscale() == "log"
    assert set(axis.get_xticks()) <= {100, 1000, 10_000, 100_000} and len(axis.get_xticks()) == 4
    assert [label.get_text() for label in axis.get_xticklabels()] == ["100", "1,000", "10,000", "100,000"]
    assert [label.get_text() for label in axis.get_yticklabels()] == ["1", "10", "100"]
    assert not axis.get_xticklabels(minor=True) and not axis.get_yticklabels(minor=True)


def test_titles_count_in_words_and_dynamics_has_a_default_title():
    assert "1 seed," in plot.phase_diagram(hand_made_result(seeds=1)).get_suptitle()
    assert "1 seeds" not in plot.phase_diagram(hand_made_result(seeds=1)).get_suptitle()
    run = jaxbo.simulate(0, jaxbo.Config(n_train=10, T=5, d=50, n_test=16, steps=20, log_every=10))
    title = plot.dynamics(run).get_suptitle()
    assert title.startswith("one run (reduced engine, 20 steps): train accuracy") and "test accuracy" in title
    assert plot.dynamics(run, title="").get_suptitle() == ""
