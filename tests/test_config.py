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


def test_a_sub_configuration_keeps_the_tuned_defaults_of_every_field_it_does_not_set():
    from sleep_agent import CycleConfig, GateConfig, LoraTrainConfig

    tuned = CycleConfig().training
    partial = SleepConfig(cycle=CycleConfig(training=LoraTrainConfig(rank=8))).cycle.training
    assert partial.rank == 8
    assert partial.model_dump(exclude={"rank"}) == tuned.model_dump(exclude={"rank"})
    assert (tuned.learning_rate, tuned.epochs, tuned.kl_weight) == (5e-4, 5.0, 2.0)
    assert LoraTrainConfig() == tuned  # one place sets them
    assert SleepConfig(cycle={"gate": {"max_probe_drop": 3}}).cycle.gate == GateConfig(max_probe_drop=3)


def test_the_memory_runs_the_cycle_its_configuration_describes(tmp_path):
    from sleep_agent import CycleConfig, SleepMemory

    config = SleepConfig(home=tmp_path, cycle=CycleConfig(replay=7))
    memory = SleepMemory(config, token_counter=len)
    assert memory.cycle.config.replay == 7
