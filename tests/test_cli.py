import socket

from typer.testing import CliRunner

from sleep_agent.cli import app

runner = CliRunner()


def test_help_lists_the_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "prepare-model" in result.output and "serve" in result.output


def test_prepare_model_prints_the_checkpoint_directory(tiny_model_dir):
    result = runner.invoke(app, ["prepare-model", "--model", str(tiny_model_dir)])
    assert result.exit_code == 0
    assert result.stdout.strip() == str(tiny_model_dir.resolve())


def test_prepare_model_with_a_bad_path_fails_with_a_message():
    result = runner.invoke(app, ["prepare-model", "--model", "./missing/model"])
    assert result.exit_code == 1
    assert "does not exist" in result.output


def test_serve_refuses_a_malformed_adapter_option(tiny_model_dir):
    result = runner.invoke(app, ["serve", "--model", str(tiny_model_dir), "--adapter", "alice@v1"])
    assert result.exit_code == 1
    assert "NAME=DIR" in result.output


def test_serve_on_a_busy_port_fails_at_once(tiny_model_dir):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = runner.invoke(app, ["serve", "--model", str(tiny_model_dir), "--port", str(port)])
    assert result.exit_code == 1
    assert "the port is in use" in result.output
