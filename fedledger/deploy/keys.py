"""Institution keys in encrypted keystore files (the Web3 Secret Storage format, as geth writes).

The password comes from an environment variable or a file, never from a config file or the
command line, where it would end up in shell histories and process listings.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from fedledger.errors import ConfigError

PASSWORD_ENV = "FEDLEDGER_PASSWORD"
MIN_PASSWORD_LENGTH = 12   # the keystore's scrypt slows guessing, it does not make "x" safe


def read_password(env: str | None = None, file: str | Path | None = None) -> str:
    """The keystore password: from `file` if given, else from environment variable `env`
    (default FEDLEDGER_PASSWORD). A file's trailing newline is not part of the password."""
    if file is not None:
        try:
            return Path(file).read_text().rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(f"cannot read the password file {file}: {exc.strerror}") from None
    name = env or PASSWORD_ENV
    password = os.environ.get(name)
    if not password:
        raise ConfigError(f"no keystore password: set the environment variable {name} or give a password file")
    return password


def create_keystore(path: str | Path, password: str) -> LocalAccount:
    """A new key, written encrypted to `path` (readable by its owner only); refuses to overwrite
    and refuses a password shorter than MIN_PASSWORD_LENGTH."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ConfigError(f"a keystore password needs at least {MIN_PASSWORD_LENGTH} characters, "
                          f"this one has {len(password)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"{path} already exists; a keystore is never overwritten") from None
    account = Account.create()
    with os.fdopen(fd, "w") as f:
        json.dump(Account.encrypt(account.key, password), f)
    return account


def load_keystore(path: str | Path, password: str) -> LocalAccount:
    """The key in keystore `path`; ConfigError if it is missing, malformed or the password is wrong."""
    try:
        encrypted = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read the keystore {path}: {exc.strerror}") from None
    except ValueError:
        raise ConfigError(f"{path} is not a keystore file (not JSON)") from None
    try:
        return Account.from_key(Account.decrypt(encrypted, password))
    except ValueError as exc:
        wrong = "MAC mismatch" in str(exc)
        raise ConfigError(f"cannot decrypt the keystore {path}: "
                          f"{'wrong password' if wrong else 'not a valid keystore'}") from None
    except (KeyError, TypeError):
        raise ConfigError(f"{path} is not a valid keystore file") from None
