"""A token kept in a file follows the file: re-read when the kubelet swaps it, at least
every minute, on demand after a 401, and never replaced by nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from controller.kube import TokenFile, TokenFileConfig, load_config


class Projected:
    """A projected ServiceAccount volume as the kubelet writes it: ``token`` is a symlink
    into ``..data``, itself a symlink to a timestamped directory that a rotation replaces
    atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.generation = 0
        (root / "token").symlink_to("..data/token")

    def write(self, token: str) -> None:
        self.generation += 1
        version = self.root / f"..2024_01_01_00_00_{self.generation:02d}"
        version.mkdir()
        (version / "token").write_text(token)
        staging = self.root / "..data_tmp"
        staging.symlink_to(version.name)
        os.replace(staging, self.root / "..data")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_unchanged_file_is_read_once_until_the_recheck_period(tmp_path: Path) -> None:
    volume = Projected(tmp_path)
    volume.write("first")
    clock = Clock()
    tokens = TokenFile(tmp_path / "token", recheck_s=60, clock=clock)
    for _ in range(100):
        assert tokens.token() == "first"
        clock.now += 0.5
    assert tokens.reads == 1
    clock.now = 60.0
    assert tokens.token() == "first"
    assert tokens.reads == 2  # a minute on: read again, whatever stat says


def test_a_rotated_file_is_used_from_the_next_request(tmp_path: Path) -> None:
    volume = Projected(tmp_path)
    volume.write("first\n")
    clock = Clock()
    tokens = TokenFile(tmp_path / "token", recheck_s=3600, clock=clock)
    assert tokens.token() == "first"
    volume.write("second\n")
    assert tokens.token() == "second"
    assert tokens.reads == 2


def test_a_change_stat_cannot_see_is_found_when_forced(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("aaaa")
    before = os.stat(path)
    clock = Clock()
    tokens = TokenFile(path, recheck_s=3600, clock=clock)
    assert tokens.token() == "aaaa"
    path.write_text("bbbb")  # same inode and size; the old modification time put back
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert tokens.token() == "aaaa"
    assert tokens.token(force=True) == "bbbb"


def test_a_missing_or_empty_file_keeps_the_last_token(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("first")
    tokens = TokenFile(path, recheck_s=0)
    assert tokens.token() == "first"
    path.write_text("")
    assert tokens.token() == "first"
    path.unlink()
    assert tokens.token() == "first"
    path.write_text("second")
    assert tokens.token() == "second"


def service_account_dir(root: Path) -> Projected:
    volume = Projected(root)
    (root / "namespace").write_text("ns")
    (root / "ca.crt").write_text("not used before a request")
    return volume


def test_the_in_cluster_config_hands_out_the_current_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    volume = service_account_dir(tmp_path)
    volume.write("first")
    config = load_config(service_account_dir=tmp_path)
    assert isinstance(config, TokenFileConfig)
    assert config.cluster["server"] == "https://10.0.0.1:443"
    assert config.user["token"] == "first"
    volume.write("second")
    # What pykube's adapter and the kopf login handler read, each time they need it.
    assert config.user["token"] == "second"
    assert config.namespace == "ns"


def test_a_kubeconfig_token_file_is_read_relative_to_the_kubeconfig(tmp_path: Path) -> None:
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "token").write_text("from-file\n")
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
                "users": [{"name": "u", "user": {"tokenFile": "creds/token"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    config = load_config(str(kubeconfig))
    assert isinstance(config, TokenFileConfig)
    assert config.user["token"] == "from-file"
    (tmp_path / "creds" / "token").write_text("rotated\n")
    assert config.user["token"] == "rotated"


def test_an_inline_token_wins_over_a_token_file(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
                "users": [{"name": "u", "user": {"token": "inline", "tokenFile": "nowhere"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    config = load_config(str(kubeconfig))
    assert not isinstance(config, TokenFileConfig)
    assert config.user["token"] == "inline"
