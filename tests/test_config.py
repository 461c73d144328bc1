import pytest
from pydantic import ValidationError

from sleep_agent import ServingConfig, SleepConfig


def test_defaults_match_the_documented_api():
    config = SleepConfig()
    assert config.model == "default"
    assert config.serving.backend == "vllm"
    assert config.serving.max_lora_rank == 16


def test_serving_shorthand_string():
    assert SleepConfig(serving="local").serving.backend == "local"


def test_base_url_is_normalised():
    assert ServingConfig(base_url="http://127.0.0.1:8000/v1/").base_url == "http://127.0.0.1:8000"


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"namespace": "al ice"}, ["namespace", "al ice", "letters"]),
        ({"namespace": "alice@v1"}, ["namespace", "alice@v1"]),
        ({"namespace": ""}, ["namespace"]),
        ({"serving": "tgi"}, ["serving", "tgi", "'vllm' or 'local'"]),
        ({"model": "  "}, ["model", "default"]),
        ({"serving": {"port": 70000}}, ["port"]),
        ({"serving": {"base_url": "localhost:8000"}}, ["base_url", "http://"]),
        ({"unknown_key": 1}, ["unknown_key"]),
    ],
)
def test_bad_values_name_the_field_and_the_fix(kwargs, words):
    with pytest.raises(ValidationError) as info:
        SleepConfig(**kwargs)
    message = str(info.value)
    for word in words:
        assert word in message


def test_assignment_is_validated():
    config = SleepConfig()
    with pytest.raises(ValidationError):
        config.namespace = "bad name"
    assert config.namespace == "default"
