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


def test_adapters_list_and_rollback(tmp_path):
    from test_adapters import fake_adapter

    from sleep_agent.adapters import AdapterRegistry, Manifest

    reg = AdapterRegistry(tmp_path, "alice")
    gate = {"before": {"recall": 0.0, "probe": 11}, "after": {"recall": 0.75, "probe": 11}}
    reg.publish(
        fake_adapter(tmp_path / "a", "one"), Manifest("alice", 1, None, episodes=["e1"], metrics=gate)
    )
    reg.publish(fake_adapter(tmp_path / "b", "two"), Manifest("alice", 2, 1, episodes=["e1", "e2"]))
    listed = runner.invoke(
        app, ["adapters", "list", "-n", "alice", "--home", str(tmp_path)], terminal_width=200
    )
    assert listed.exit_code == 0, listed.output
    v1, v2 = [line for line in listed.output.splitlines() if "alice@v" in line]
    assert "0% -> 75%" in v1 and "11 -> 11" in v1 and "*" not in v1
    assert "*" in v2 and "v1" in v2  # current, with its parent

    back = runner.invoke(app, ["adapters", "rollback", "-n", "alice", "--home", str(tmp_path)])
    assert back.exit_code == 0 and "v2 -> v1" in back.output and reg.current() == 1
    again = runner.invoke(app, ["adapters", "rollback", "-n", "alice", "--home", str(tmp_path)])
    assert again.exit_code == 1 and "no version before v1" in again.output and reg.current() == 1


def test_adapters_of_an_unknown_namespace_fail_with_a_message(tmp_path):
    result = runner.invoke(app, ["adapters", "list", "-n", "nobody", "--home", str(tmp_path)])
    assert result.exit_code == 1 and "no adapters for namespace 'nobody'" in result.output
    assert not (tmp_path / "adapters").exists()


def test_web_user_add_prints_a_login_link_whose_token_logs_in_and_remove_revokes_it(tmp_path):
    from sleep_agent.chatbot.access import WebUsers

    home = str(tmp_path / "home")
    added = runner.invoke(app, ["web-user", "add", "alice", "--home", home, "--url", "http://h:1/"])
    assert added.exit_code == 0
    token = added.stdout.split("#token=")[1].split()[0]
    users = WebUsers(home)
    assert users.login(token).user == "alice" and not users.login(token).admin
    assert runner.invoke(app, ["web-user", "add", "root", "--admin", "--home", home]).exit_code == 0
    assert runner.invoke(app, ["web-user", "list", "--home", home]).stdout.split() == [
        "alice",
        "root",
        "admin",
    ]
    again = runner.invoke(app, ["web-user", "add", "alice", "--home", home])
    assert users.login(token) is None and again.exit_code == 0  # a new token replaces the old one
    assert runner.invoke(app, ["web-user", "remove", "alice", "--home", home]).exit_code == 0
    gone = runner.invoke(app, ["web-user", "remove", "alice", "--home", home])
    assert gone.exit_code == 1 and "no web user 'alice'" in gone.output
    bad = runner.invoke(app, ["web-user", "add", "../x", "--home", home])
    assert bad.exit_code == 1 and "letters, digits" in bad.output


def test_eval_agent_refuses_an_unknown_environment_and_env_on_another_protocol(tmp_path):
    wrong = runner.invoke(app, ["eval", "agent", "--env", "atari", "--out", str(tmp_path)])
    assert wrong.exit_code == 1
    assert "textworld, scienceworld, miniwob, terminal" in wrong.output
    misplaced = runner.invoke(app, ["eval", "p1", "--env", "terminal", "--out", str(tmp_path)])
    assert misplaced.exit_code == 1 and "--env is for the agent protocol" in misplaced.output
    assert not list(tmp_path.iterdir())  # refused before anything ran
