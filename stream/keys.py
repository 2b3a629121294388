"""CURVE keys for publishing beyond loopback: who may subscribe, and the server's identity.

    DIR/server.key, DIR/server.key_secret     the publisher's key pair
    DIR/clients/<name>.key                    public keys of the clients allowed to subscribe
    DIR/clients/<name>.key_secret             (made here for convenience: give each client its
                                               own pair and the server's public key, then
                                               delete the secret from the server's machine)
"""

from __future__ import annotations

import os
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from anonynoise.errors import AnonyNoiseError


def make_keys(folder: str | Path, clients: tuple[str, ...] = ("client",)) -> Path:
    """Create the server key pair and client key pairs (existing files are kept). Secret
    keys are readable by their owner only (0600), public keys as the umask says."""
    folder = Path(folder)
    (folder / "clients").mkdir(parents=True, exist_ok=True)
    if not (folder / "server.key_secret").exists():
        _create_pair(folder, "server")
    for name in clients:
        if not (folder / "clients" / f"{name}.key_secret").exists():
            _create_pair(folder / "clients", name)
    return folder


def _create_pair(folder: Path, name: str) -> None:
    # the umask while pyzmq writes, so that no secret is ever world-readable, not even
    # between its creation and a chmod
    umask = os.umask(0o077)
    try:
        public, _ = zmq.auth.create_certificates(str(folder), name)
    finally:
        os.umask(umask)
    os.chmod(public, 0o666 & ~umask)


def _load(path: Path, secret: bool):
    try:
        public, private = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as e:
        raise AnonyNoiseError(f"{path}: not a CURVE key file ({e})") from None
    if secret and private is None:
        raise AnonyNoiseError(f"{path}: holds no secret key")
    return public, private


def server_keys(folder: Path):
    path = folder / "server.key_secret"
    if not path.is_file():
        raise AnonyNoiseError(f"{folder}: no server.key_secret (make the keys with "
                              "`anonynoise-stream keys DIR`)")
    return _load(path, secret=True)


def start_authenticator(context: zmq.Context, folder: Path):
    """Start ZeroMQ's authenticator allowing exactly the public keys in DIR/clients/;
    returns (authenticator, (server public, server secret))."""
    keys = server_keys(folder)
    clients = folder / "clients"
    if not clients.is_dir() or not any(clients.glob("*.key")):
        raise AnonyNoiseError(f"{clients}: no client public keys (*.key): nobody could "
                              "subscribe")
    auth = ThreadAuthenticator(context)
    auth.start()
    auth.configure_curve(domain="*", location=str(clients))
    return auth, keys


def client_keys(folder: str | Path, name: str = "client"):
    """(client public, client secret, server public) for a subscriber."""
    folder = Path(folder)
    if not folder.is_dir():
        raise AnonyNoiseError(f"{folder}: no such folder (make the keys with "
                              "`anonynoise-stream keys DIR`)")
    path = folder / "clients" / f"{name}.key_secret"
    if not path.is_file():
        raise AnonyNoiseError(f"{path}: no such key file (a client's keys are made by "
                              f"`anonynoise-stream keys DIR --clients {name}`)")
    public, secret = _load(path, secret=True)
    server_public, _ = _load(folder / "server.key", secret=False)
    return public, secret, server_public
