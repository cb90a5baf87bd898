"""Secrets out of everything a run publishes: every detect-secrets plugin applied, whole private keys, the
AWS credentials file, the token kinds the plugins miss, and a token inside a data file's path, down to the
files a real run writes (run.json, spec.yaml, report.md, the model card)."""

from __future__ import annotations

import json

import pytest
from conftest import labelled_rows, run_cli, tiny_spec_text, write_csv, write_spec

from runner.redact import REDACTED, plugin_classes, redact, redact_text

# One line each plugin finds, by plugin class: a detect-secrets upgrade that adds a plugin fails the
# coverage test below until its line is here (and so until redaction is known to apply it).
PLUGIN_SAMPLES = {
    "ArtifactoryDetector": "artifactory key AKCp5e2gMx8ZWgpNbCZKQuGfbyJ9yU2TsrcyPFVgNf1nGwZ4hvZy2Fd3CaqJ2dsjJ9dC7MZvd",
    "AWSKeyDetector": "key AKIAIOSFODNN7EXAMPLE here",
    "AzureStorageKeyDetector": "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey="
    "lJzRc1YdHaAA2KCNJJ1tkYwF/+mKK6Ygw0NGe170Xu592euJv2wYUtBlV8z+qnlcNQSnIYVTkLWntUO1F8j8rQ== end",
    "BasicAuthDetector": "db postgres://admin:s3cretpw@db.example:5432/x",
    "CloudantDetector": "https://acct:" + "a1" * 32 + "@acct.cloudant.com",
    "DiscordBotTokenDetector": "bot MZ1yGvKTjE0rY0cV8i47CjAa.uRHQPq.Xb1Mk2nEhe-4iUcrGOuegj57zMC",
    "GitHubTokenDetector": "ghs_" + "a1B2" * 9,
    "GitLabTokenDetector": "glpat-" + "a1B2c3D4e5F6g7H8i9J0",
    "IbmCloudIamDetector": 'ibm_cloud_iam_api_key = "abcd1234abcd1234abcd1234ABCD1234abcd1234--__"',
    "IbmCosHmacDetector": 'cos_hmac_secret_access_key = "' + "a1" * 24 + '"',
    "JwtTokenDetector": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
    "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "KeywordDetector": 'db_password = "Tr0ub4dor&3xyz"',
    "MailchimpDetector": "mc " + "a1b2c3d4" * 4 + "-us12",
    "NpmDetector": "//registry.npmjs.org/:_authToken=npm_" + "A1b2" * 9,
    "OpenAIDetector": "sk-" + "A1b2C3d4E5" * 2 + "T3BlbkFJ" + "F6g7H8i9J0" * 2,
    "PrivateKeyDetector": "-----BEGIN OPENSSH PRIVATE KEY-----",
    "PypiTokenDetector": "pypi-AgEIcHlwaS5vcmc" + "A1b2C3d4E5" * 8,
    "SendGridDetector": "SG.a1B2c3D4e5F6g7H8i9J0k1.a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8s9T0u1v",
    "SlackDetector": "https://hooks.slack.com/services/T01ABCDEF/B01ABCDEF/abcdefghijklmnopqrstuvwx",
    "SoftlayerDetector": 'softlayer_api_key = "' + "a1b2c3d4" * 8 + '"',
    "SquareOAuthDetector": "sq0csp-a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8s9T0u1v",
    "StripeDetector": "rk_live_" + "a1B2" * 6,
    "TelegramBotTokenDetector": "bot 123456789:AAEa1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6",
    "TwilioKeyDetector": "twilio SK" + "a1b2c3d4" * 4,
}
KEY_BODY = ["MIIEpAIBAAKCAQEAwJxQ7k3mYb2yP0", "q8Zk1sH0dLm3NvR7tYw2XcB5eF9gJ", "Qx4Vn6Tz8Lp2Rk0Wm"]
PRIVATE_KEY = "\n".join(["-----BEGIN RSA PRIVATE KEY-----", *KEY_BODY, "-----END RSA PRIVATE KEY-----"])
AWS_FILE = ("[default]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\n"
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n")
HF_TOKEN = "hf_" + "Pq7Zr2" * 6


def test_every_detect_secrets_plugin_is_applied():
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

    applied = plugin_classes(get_mapping_from_secret_type_to_class())
    assert len(applied) >= 24 and {cls.__name__ for cls in applied} == set(PLUGIN_SAMPLES)
    for cls in applied:
        sample = PLUGIN_SAMPLES[cls.__name__]
        found = [value for value in cls().analyze_string(sample) if value]
        assert found, f"{cls.__name__} finds nothing in its sample"
        shown = redact_text(sample)
        assert REDACTED in shown, (cls.__name__, shown)
        for value in found:
            assert value.strip(" \"'=") not in shown, (cls.__name__, value, shown)


@pytest.mark.parametrize("text, gone, kept", [
    (f"before\n{PRIVATE_KEY}\nafter", KEY_BODY, ["before", "after"]),  # the body too, not just the BEGIN line
    (f"key: -----BEGIN PRIVATE KEY-----\n{KEY_BODY[0]}\n{KEY_BODY[1]}", KEY_BODY[:2], ["key: "]),  # never ended
    ('{"private_key": "' + PRIVATE_KEY.replace("\n", "\\n") + '\\n", "id": 7}', KEY_BODY, ['"id": 7']),  # JSON
    ("PuTTY-User-Key-File-2: ssh-rsa\nEncryption: none\nPrivate-Lines: 2\n" + "\n".join(KEY_BODY), KEY_BODY, []),
    (AWS_FILE, ["AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI"], ["[default]", "aws_secret_access_key = <redacted>"]),
    ('export AWS_SECRET_ACCESS_KEY="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"', ["wJalr"], ["AWS_SECRET_ACCESS_KEY"]),
    ('password = "Tr0ub4dor&3xyz" ok', ["Tr0ub4", "&3xyz"], ["ok"]),
    ("Authorization: Bearer " + "abcDEF123" * 3, ["abcDEF123"], ["Authorization: Bearer"]),
])
def test_private_keys_and_credential_files_are_redacted_whole(text, gone, kept):
    shown = redact_text(text)
    assert REDACTED in shown
    for part in gone:
        assert part not in shown, (part, shown)
    for part in kept:
        assert part in shown, (part, shown)


@pytest.mark.parametrize("secret", [
    "sk-ant-api03-" + "Ab3dE6gH9j" * 9 + "-x1Y2AA",  # Anthropic
    "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q",  # Google API key: AIza + 35
    "sk-proj-" + "Ab12Cd34" * 10,  # OpenAI project key (no T3BlbkFJ inside)
    "xoxe-1-" + "My4xLTE" * 5,  # Slack (a kind the Slack plugin does not know)
    "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc" + "Q1",  # Stripe, longer than the plugin's 24
    "sk_test_" + "4eC39HqLyjWDarjtT1zdp7dc",
    "glpat-" + "a1B2c3D4e5F6g7H8i9J0" + "k1L2",
    "npm_" + "A1b2" * 9,  # npm, outside an .npmrc line
    "pypi-AgEIcHlwaS5vcmc" + "A1b2C3" * 10,  # shorter than the plugin's 70
    "github_pat_" + "11ABCDEFG0" * 5,
])
def test_token_kinds_the_plugins_miss(secret):
    for text in (f"token {secret} here", f"data/{secret}/train.csv", f"data/my_{secret}_set/train.csv"):
        shown = redact_text(text)
        assert secret not in shown and secret[8:24] not in shown, shown
    assert redact_text(f"data/{secret}/train.csv") == "data/<redacted>/train.csv"  # the path keeps its shape


@pytest.mark.parametrize("text", [
    "the bearer of bad news", "a task-proj plan", "d97effe91b038dbf512a630fce23c87c5cd6450cd6334cf1c86c52560741da69",
    "data/train.csv", "runs/emotions/model", "hi @octocat see #12", "skill-ant-colony", "AIza short",
])
def test_ordinary_text_stays(text):
    assert redact_text(text) == text


def test_a_token_in_a_path_component_keeps_the_rest_of_the_path():
    assert redact_text(f"data/{HF_TOKEN}/train.csv") == "data/<redacted>/train.csv"
    assert redact_text("data/my-AKIAIOSFODNN7EXAMPLE-set/train.csv") == "data/my-<redacted>-set/train.csv"
    assert redact({"train": f"/srv/{HF_TOKEN}/t.csv", HF_TOKEN: [1]}) == {"train": "/srv/<redacted>/t.csv",
                                                                         "<redacted>": [1]}


def test_a_run_publishes_no_secret_from_its_data_path_texts_or_spec(tmp_path, tiny_model):
    """The hostile pass: a token in a data file's folder name (spec.yaml, run.json), a private key, an AWS
    credentials file, Anthropic and Google keys in training texts (repeated: the data checks quote them)."""
    anthropic, google = "sk-ant-api03-" + "Zy8Xw7Vu6T" * 8, "AIza" + "Sy9Kq2Lm4Np6Rs8Tu0Vw1Xy3Za5Bc7De9Fg"
    rows = labelled_rows(per_label=25)
    planted = [{"text": f"my key {PRIVATE_KEY} thanks", "label": "pos"},
               {"text": f"creds {AWS_FILE} ok", "label": "neg"},
               {"text": f"keys {anthropic} and {google}", "label": "neg"}]
    write_csv(tmp_path / "data" / HF_TOKEN / "train.csv", rows + planted * 2)  # twice: quoted as duplicates
    spec = write_spec(tmp_path, tiny_spec_text(tiny_model, train=f"data/{HF_TOKEN}/train.csv"))
    result = run_cli("run", str(spec), cwd=tmp_path, env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "run"
    published = {name: (run / name).read_text(encoding="utf-8")
                 for name in ("run.json", "spec.yaml", "report.md", "model/README.md")}
    assert "my key" in published["report.md"]  # the planted texts are quoted, redacted
    for name, text in published.items():
        for secret in (HF_TOKEN, anthropic, google, *KEY_BODY, "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI"):
            assert secret not in text, (name, secret)
    manifest = json.loads(published["run.json"])
    assert manifest["data"]["files"]["train"]["path"] == "data/<redacted>/train.csv"
    summary = run_cli("report", "run", cwd=tmp_path)
    assert summary.returncode == 0 and HF_TOKEN not in summary.stdout


@pytest.mark.parametrize("text, kept", [
    ("export HF_TOKEN=<a write token from https://huggingface.co/settings/tokens> or run `hf auth login`",
     "HF_TOKEN=<a write token from https://huggingface.co/settings/tokens>"),  # the hint, whole
    ('token="<your-token>"', 'token="<your-token>"'),
    ("HF_TOKEN=<token>", "HF_TOKEN=<token>"),
])
def test_a_placeholder_in_angle_brackets_is_a_hint_not_a_secret(text, kept):
    assert kept in redact_text(text) and REDACTED not in redact_text(text)


@pytest.mark.parametrize("text", ["password=<Secr3t!9x>", "password=<unclosed", "HF_TOKEN=hf_" + "a1" * 17])
def test_a_value_that_only_starts_like_a_placeholder_is_still_redacted(text):
    assert REDACTED in redact_text(text)


def test_the_no_token_hint_reads_whole(tmp_path, monkeypatch):
    """`runner push` with no token: the hint says what to export, not `<redacted> write token ...>`."""
    from runner.errors import RunnerError
    from runner.publish.hub import find_token

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(RunnerError) as caught:
        find_token()
    lines = "\n".join(caught.value.lines())
    assert "export HF_TOKEN=<a write token from https://huggingface.co/settings/tokens>" in lines, lines


def test_a_token_run_into_an_assignment_leaves_neither_in_clear():
    """Found by the renderer's property test: `hf_...` ran into `password=x` swallowed the name, and the value
    stayed in clear (`<redacted>=hunter2secret`)."""
    redacted = redact_text("hf_" + "Ab1" * 10 + "password=hunter2secret")
    assert "hunter2secret" not in redacted and "Ab1Ab1" not in redacted


def test_tokens_run_together_are_redacted_whole():
    """`hf_...xoxb-123456789012-...`: the Hugging Face token's match ended inside the Slack token and left its
    digits in clear (found by the renderer's property test); every token's span counts."""
    from runner.redact import redact_text

    slack = "xoxb-123456789012-abcdefghijkl"
    for text in (f"hf_{'A' * 24}{slack}", f"see hf_{'b' * 22}{slack} now", f"ghp_{'c' * 30}{slack}"):
        out = redact_text(text)
        assert "123456789012" not in out and "abcdefghijkl" not in out and "<redacted>" in out, out
    assert redact_text(f"a {slack}, b AKIA{'Q' * 16}.") == "a <redacted>, b <redacted>."
    assert redact_text("taskxoxb-123456789012 stays: a word, not a token") == \
        "taskxoxb-123456789012 stays: a word, not a token"
