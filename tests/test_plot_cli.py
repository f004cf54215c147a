import matplotlib.image
import numpy as np
import pytest

import jaxbo
from jaxbo import cli, plot

SMALL = ["--set", "n_train=10", "--set", "T=5", "--set", "n_test=32", "--set", "steps=20", "--set", "log_every=10"]


def test_cell_edges():
    np.testing.assert_allclose(plot.cell_edges(np.array([1.0, 2.0, 4.0])), [0.5, 1.5, 3.0, 5.0])
    np.testing.assert_allclose(plot.cell_edges(np.array([7.0])), [6.5, 7.5])


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
    with pytest.raises(ValueError, match="select"):
        plot.phase_diagram(result)


def test_cli_run_writes_dynamics_and_errors_are_clear(tmp_path, capsys):
    assert cli.main(["run", "--out", str(tmp_path), "--quiet", "--set", "d=300", *SMALL]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "dynamics.png")
    assert matplotlib.image.imread(tmp_path / "dynamics.png")[..., :3].std() > 0.05
    assert cli.main(["sweep", "--out", str(tmp_path), "--set", "noise_rate=0.7"]) == 2
    assert "Config.noise_rate = 0.7" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["sweep", "--d", "1:2"])


def test_dynamics_needs_one_run():
    config = jaxbo.Config(n_train=10, T=5, d=50, n_test=16, steps=20, log_every=10)
    import jax

    batch = jax.vmap(jaxbo.make_run(config))(jax.random.split(jax.random.key(0), 2))
    with pytest.raises(ValueError, match="one run"):
        plot.dynamics(batch)
