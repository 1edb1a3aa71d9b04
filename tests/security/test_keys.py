"""CURVE keys: the ``keys`` command, and every mis-configuration refused at start in one
clear line."""

from __future__ import annotations

import os
import shutil
import stat

import pytest
import zmq
import zmq.auth
from support.cli import write_pipeline, zmqpipeline
from support.curve import CURVE_ENV
from support.procs import free_port

from zmqpipeline.errors import ConfigurationError
from zmqpipeline.runtime.transport import close_sockets, new_context, open_socket
from zmqpipeline.security import (
    ENV_SECRET_KEY,
    Security,
    generate_keys,
)
from zmqpipeline.settings import Settings

pytestmark = pytest.mark.timeout(60)


# -- keys -------------------------------------------------------------------------------------


def test_keys_command_writes_a_certificate_pair_with_a_private_secret(tmp_path):
    folder = tmp_path / "new" / "keys"
    result = zmqpipeline("keys", str(folder), "--name", "alice")
    assert result.returncode == 0, result.stderr
    public, secret = folder / "alice.key", folder / "alice.key_secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    pub_key, no_secret = zmq.auth.load_certificate(public)
    same_pub, sec_key = zmq.auth.load_certificate(secret)
    assert no_secret is None and sec_key is not None and pub_key == same_pub
    assert zmq.curve_public(sec_key) == pub_key
    assert sorted(p.name for p in folder.iterdir()) == ["alice.key", "alice.key_secret"]

    again = zmqpipeline("keys", str(folder), "--name", "alice")
    assert again.returncode == 2 and again.stderr.count("\n") == 1
    assert "already exists" in again.stderr
    assert zmq.auth.load_certificate(secret)[1] == sec_key, "an existing pair is kept"
    forced = zmqpipeline("keys", str(folder), "--name", "alice", "--force")
    assert forced.returncode == 0 and zmq.auth.load_certificate(secret)[1] != sec_key


def test_keys_command_authorises_a_role(tmp_path):
    result = zmqpipeline("keys", str(tmp_path), "--name", "ops", "--role", "operators")
    assert result.returncode == 0, result.stderr
    authorised = tmp_path / "authorized" / "operators" / "ops.key"
    assert authorised.read_bytes() == (tmp_path / "ops.key").read_bytes()
    server_public, _ = generate_keys(tmp_path, "server")
    security = Security(tmp_path / "server.key_secret", server_public, tmp_path / "authorized")
    ops_key = Security(tmp_path / "ops.key_secret").public_key
    assert security.admits(ops_key, "operators")
    assert not security.admits(ops_key, "workers") and not security.admits(ops_key, "distributor")


def test_key_names_with_path_separators_are_refused(tmp_path):
    with pytest.raises(ConfigurationError, match="key name"):
        generate_keys(tmp_path, "../escape")


# -- mis-configuration: one clear line, at start -------------------------------------------------


def _one_line(exc: pytest.ExceptionInfo[ConfigurationError]) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_missing_key_file_is_named(keys):
    missing = keys.dir / "nobody.key_secret"
    with pytest.raises(ConfigurationError) as exc:
        Security(missing, keys.server_public, keys.authorized)
    assert str(missing) in _one_line(exc) and "no such file" in str(exc.value)


def test_secret_key_where_a_public_one_is_expected_is_refused(keys):
    with pytest.raises(ConfigurationError, match="secret key where a public one") as exc:
        Security(keys.server_secret, keys.server_secret, keys.authorized)
    assert str(keys.server_secret) in _one_line(exc)


def test_secret_key_among_the_authorised_keys_is_refused(keys):
    shutil.copy(keys.dir / "rogue.key_secret", keys.authorized / "leaked.key")
    with pytest.raises(ConfigurationError, match=r"leaked\.key: holds a secret key") as exc:
        Security(keys.server_secret, keys.server_public, keys.authorized)
    _one_line(exc)


def test_public_key_where_the_secret_one_is_expected_is_refused(keys):
    with pytest.raises(ConfigurationError, match="holds only a public key") as exc:
        Security(keys.server_public, keys.server_public)
    _one_line(exc)


def test_file_that_is_not_a_certificate_is_refused(keys, tmp_path):
    junk = tmp_path / "junk.key"
    junk.write_text("hello\n")
    with pytest.raises(ConfigurationError, match="not a ZeroMQ certificate") as exc:
        Security(keys.server_secret, junk)
    assert str(junk) in _one_line(exc)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_key_file_is_named(keys):
    os.chmod(keys.server_secret, 0)
    with pytest.raises(ConfigurationError, match="cannot be read") as exc:
        Security(keys.server_secret)
    assert str(keys.server_secret) in _one_line(exc)


def test_missing_authorised_directory_is_named(keys, tmp_path):
    with pytest.raises(ConfigurationError, match="no such directory") as exc:
        Security(keys.server_secret, keys.server_public, tmp_path / "absent")
    _one_line(exc)


def test_libzmq_without_curve_fails_at_start(keys, monkeypatch):
    monkeypatch.setattr(zmq, "has", lambda capability: capability != "curve")
    with pytest.raises(ConfigurationError, match="built without CURVE") as exc:
        Security(keys.server_secret)
    _one_line(exc)
    with pytest.raises(ConfigurationError, match="built without CURVE"):
        generate_keys(keys.dir, "later")


def test_environment_names_the_configuration(keys, monkeypatch):
    for name in CURVE_ENV:
        monkeypatch.delenv(name, raising=False)
    assert Settings.from_env().security is None
    for name, value in keys.env("worker1").items():
        monkeypatch.setenv(name, value)
    security = Settings.from_env().security
    assert security == keys.security("worker1")
    assert (
        security is not None
        and security.server_key == zmq.auth.load_certificate(keys.server_public)[0]
    )
    monkeypatch.delenv(ENV_SECRET_KEY)
    with pytest.raises(ConfigurationError, match=f"{ENV_SECRET_KEY} is not"):
        Settings.from_env()


def test_role_launched_with_a_bad_key_says_so_in_one_line(tmp_path, monkeypatch):
    folder = write_pipeline(tmp_path / "job")
    monkeypatch.setenv(ENV_SECRET_KEY, str(tmp_path / "missing.key_secret"))
    result = zmqpipeline("worker", "worker.py:JobWorker", cwd=folder, timeout=20)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert "missing.key_secret: no such file" in result.stderr


def test_sockets_without_the_key_they_need_are_refused(keys, tmp_path):
    ctx = new_context()
    try:
        client_only = Settings.from_env(security=Security(keys.dir / "worker1.key_secret"))
        with pytest.raises(ConfigurationError, match="server's public key is not set"):
            open_socket(ctx, zmq.PUSH, "tcp://127.0.0.1:5999", bind=False, settings=client_only)
        with pytest.raises(ConfigurationError, match="no authorised keys directory"):
            open_socket(
                ctx, zmq.PULL, f"tcp://127.0.0.1:{free_port()}", bind=True, settings=client_only
            )
        # ipc is left as it is: no keys needed
        sock = open_socket(
            ctx, zmq.PULL, f"ipc://{tmp_path}/ok.ipc", bind=True, settings=client_only
        )
        close_sockets([sock])
    finally:
        ctx.term()
