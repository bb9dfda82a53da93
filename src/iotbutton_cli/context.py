"""Resolve the global options once into a boto3 Session, clients and a registry namespace.

Precedence is the AWS CLI's: an option beats ``AWS_PROFILE`` / ``AWS_REGION`` /
``AWS_DEFAULT_REGION`` / ``AWS_ENDPOINT_URL``, which beat the profile's config file. boto3 is
imported on first use, so commands that never reach AWS (and every ``--help``) stay fast.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from iotbutton_cli.errors import IotButtonError, credentials_error, usage_error

if TYPE_CHECKING:
    from iotbutton_cli.registry.store import Namespace, Registry

log = logging.getLogger("iotbutton")

# Enough attempts for adaptive mode to ride out the control plane's 10-15 requests/s limits.
MAX_ATTEMPTS = 10
MAX_POOL_CONNECTIONS = 32


@dataclass(frozen=True)
class Settings:
    """What the user asked for on the command line (None: not given)."""

    profile: str | None = None
    region: str | None = None
    endpoint_url: str | None = None
    verbose: int = 0
    sandbox: bool = False
    # True when the sandbox was asked for by IOTBUTTON_SANDBOX, not --sandbox: then a command
    # pasted from a hint reaches the sandbox without the flag.
    sandbox_from_env: bool = False
    query: str | None = None  # --query: a JMESPath expression applied to --json output
    refresh: bool = False  # --refresh: ask STS again which account the credentials are

    @property
    def sandbox_flag_needed(self) -> bool:
        """Whether a command printed for pasting needs ``--sandbox`` to reach the same place."""
        return self.sandbox and not self.sandbox_from_env


class AppContext:
    """Everything a service needs to talk to AWS and to the registry, resolved lazily and once."""

    def __init__(
        self,
        settings: Settings | None = None,
        registry: Registry | None = None,
        notice: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self._registry = registry
        # Where a line for the user goes that is no command's result (the CLI: stderr).
        self.notice = notice or log.info
        self._clients: dict[str, Any] = {}
        self._clients_lock = threading.Lock()
        self._changing = False
        self._account_remembered = False  # account_id came from aws/accounts.py's cache

    @property
    def sandbox(self) -> bool:
        return self.settings.sandbox

    @cached_property
    def sandbox_info(self) -> Any:
        """The running sandbox (started now if needed); only in sandbox mode."""
        from iotbutton_cli.sandbox import client as sandbox_control

        result = sandbox_control.start()
        notice = result.notice()
        if notice:
            self.notice(notice)
        return result.info

    @cached_property
    def session(self) -> Any:
        import boto3

        from iotbutton_cli.aws.errors import after_call

        if self.sandbox:
            # The sandbox's own account and key pair: never the user's profile or keys.
            info = self.sandbox_info
            session = boto3.Session(
                aws_access_key_id=info.access_key_id,
                aws_secret_access_key=info.secret_access_key,
                region_name=info.region,
            )
            _mask_credentials(session)
        else:
            session = boto3.Session(profile_name=self.settings.profile or None)
            _mask_credentials(session)
        session.events.register("after-call", after_call)
        return session

    @cached_property
    def region(self) -> str:
        if self.sandbox:
            return str(self.sandbox_info.region)
        given = self._given_region()
        if given and self._offline_account is not None:
            return given  # checked by botocore when the account was remembered
        region = given or self.session.region_name
        if not region:
            raise credentials_error(
                "no-region",
                "No AWS region is configured.",
                "Pass --region (e.g. --region us-east-1), set AWS_REGION, "
                "or add `region` to your profile.",
            )
        _check_region(self.session, region, service="iot")
        return region

    def _given_region(self) -> str | None:
        """The region named by the option or the environment (not the profile's)."""
        return (
            self.settings.region
            or os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
        )

    @cached_property
    def _offline_account(self) -> str | None:
        """The account remembered for the access key in the environment in the region given,
        found without botocore: with no ``--profile``, botocore's first credential provider is
        the environment's, so its key is the one botocore would use. None otherwise."""
        region = self._given_region()
        if not region or self.sandbox or self.settings.refresh or self.settings.profile:
            return None
        access_key = os.environ.get("AWS_ACCESS_KEY_ID")
        if not access_key or not os.environ.get("AWS_SECRET_ACCESS_KEY"):
            return None
        from iotbutton_cli.aws import accounts

        return accounts.lookup(accounts.cache_key(access_key, self._identity_endpoint(), region))

    @property
    def endpoint_url(self) -> str | None:
        if self.sandbox:
            return str(self.sandbox_info.aws_url)
        _check_endpoint_url(self.settings.endpoint_url or os.environ.get("AWS_ENDPOINT_URL"))
        return self.settings.endpoint_url or None

    @cached_property
    def data_plane_url(self) -> str | None:
        """Where iot-data (the shadow REST API) is: on AWS the account's own ATS data endpoint
        (``DescribeEndpoint`` ``iot:Data-ATS``; AWS documents no other for it), elsewhere (the
        sandbox, a moto server, ``--endpoint-url``) wherever the IoT API is."""
        from iotbutton_cli.aws.ratelimit import is_aws_endpoint

        iot = self.client("iot")
        if not is_aws_endpoint(iot.meta.endpoint_url):
            return str(iot.meta.endpoint_url)
        answer = iot.describe_endpoint(endpointType="iot:Data-ATS")
        return f"https://{answer['endpointAddress']}"

    def client(self, service: str) -> Any:
        """A thread-safe boto3 client, created once per service and shared by worker threads.
        ``iot-data`` goes to :attr:`data_plane_url`, every other service to :attr:`endpoint_url`."""
        made = self._clients.get(service)
        if made is not None:  # no lock: a client being made ahead must not hold up the others
            return made
        endpoint = self.data_plane_url if service == "iot-data" else None
        with self._clients_lock:
            if service not in self._clients:
                from botocore.config import Config

                from iotbutton_cli.aws import retry

                def make(retries: dict[str, Any]) -> Any:
                    config = Config(
                        region_name=self.region,
                        retries=retries,
                        connect_timeout=retry.CONNECT_TIMEOUT_SECONDS,
                        max_pool_connections=MAX_POOL_CONNECTIONS,
                        user_agent_extra="iotbutton-cli",
                    )
                    return self.session.client(
                        service, config=config, endpoint_url=endpoint or self.endpoint_url
                    )

                client = make(_retry_config())
                limited = service == "iot" and self._limit_rate(client)
                if limited and not os.environ.get("AWS_RETRY_MODE"):
                    # Paced by its own buckets: a throttled call is retried alone, rather than
                    # adaptive mode slowing every other operation down with it.
                    client = make({**_retry_config(), "mode": "standard"})
                    self._limit_rate(client)
                retry.limit_connection_retries(client)
                self._clients[service] = client
            return self._clients[service]

    @cached_property
    def rate_limiter(self) -> Any:
        """Per-operation token buckets at AWS IoT's published rates (aws/ratelimit.py)."""
        from iotbutton_cli.aws import ratelimit

        return ratelimit.from_environment()

    def _limit_rate(self, client: Any) -> bool:
        """Bulk work stays under AWS's per-API quotas instead of riding on throttling retries.
        Whether the limiter was installed."""
        from iotbutton_cli.aws import ratelimit

        limiter = self.rate_limiter  # read (and a typo in it reported) even where it won't apply
        if not ratelimit.applies(client, self.sandbox):
            return False
        ratelimit.install(client, limiter)
        return True

    @cached_property
    def account_id(self) -> str:
        """The account the credentials belong to: remembered per access key (aws/accounts.py),
        so a command that reads only local state makes no call; otherwise one STS call, which
        also checks the credentials. :meth:`before_changes` checks a remembered one."""
        if self.sandbox:
            return self._caller_account()
        from iotbutton_cli.aws import accounts

        if self._offline_account is not None:
            self._account_remembered = True
            return self._offline_account
        key = self._account_cache_key()
        if key is not None and not self.settings.refresh:
            remembered = accounts.lookup(key)
            if remembered is not None:
                self._account_remembered = True
                return remembered
        account = self._caller_account()
        if key is not None:
            accounts.remember(key, account)
        return account

    def _caller_account(self) -> str:
        return str(self.client("sts").get_caller_identity()["Account"])

    def _account_cache_key(self) -> str | None:
        """The cache key of the credentials' access key id; None without static credentials
        here (then STS says what is wrong with them)."""
        from iotbutton_cli.aws import accounts

        try:
            credentials = self.session.get_credentials()
            access_key = credentials.get_frozen_credentials().access_key if credentials else None
        except Exception:  # STS will report the same problem, as one line
            return None
        if not access_key:
            return None
        return accounts.cache_key(access_key, self._identity_endpoint(), self.region)

    def _identity_endpoint(self) -> str | None:
        """Where STS is asked: an account remembered from one endpoint is not another's."""
        return (
            self.endpoint_url
            or os.environ.get("AWS_ENDPOINT_URL_STS")
            or os.environ.get("AWS_ENDPOINT_URL")
            or None
        )

    def _check_remembered_account(self) -> None:
        """Before a change: a remembered account must be the one STS answers (a damaged or
        edited cache must not pick the namespace a change is recorded in)."""
        remembered = self.account_id  # resolved now if no one asked yet
        if not self._account_remembered:
            return
        from iotbutton_cli.aws import accounts

        actual = self._caller_account()
        self._account_remembered = False
        if actual == remembered:
            return
        key = self._account_cache_key()
        if key is not None:
            accounts.remember(key, actual)
        raise IotButtonError(
            "account-cache-wrong",
            f"{accounts.cache_path()} said these credentials are account {remembered}; "
            f"AWS says {actual}. Nothing was changed; the file is corrected.",
            "Run the command again.",
        )

    @cached_property
    def partition(self) -> str:
        return str(self.session.get_partition_for_region(self.region))

    def arn(self, service: str, resource: str) -> str:
        return f"arn:{self.partition}:{service}:{self.region}:{self.account_id}:{resource}"

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            from iotbutton_cli.registry.store import Registry

            self._registry = Registry()
        return self._registry

    @cached_property
    def namespace(self) -> Namespace:
        if self.sandbox:
            # Separate from any real account's, whatever account id moto reports.
            from iotbutton_cli.sandbox.client import SANDBOX_NAMESPACE

            return self.registry.namespace(
                SANDBOX_NAMESPACE, account=self.account_id, region=self.region
            )
        account, region = self.account_id, self.region
        return self.registry.namespace(f"aws:{account}:{region}", account=account, region=region)

    def before_changes(self, ahead: tuple[str, ...] = ()) -> None:
        """What every command that changes AWS checks first: the registry namespace belongs to
        these credentials, and the registry can record what is about to be made.

        ``ahead``: the services the command calls next. Their clients are made while STS
        answers: making one is CPU (botocore reads its model), the STS call is a round trip."""
        self._changing = True
        making = self._make_clients_ahead(ahead)
        try:
            self._check_remembered_account()
        finally:
            if making is not None:
                making.join()
        self.check_namespace_owner()
        self.registry.check_writable()

    def _make_clients_ahead(self, services: tuple[str, ...]) -> threading.Thread | None:
        if not services:
            return None
        self.client("sts")  # first, on this thread: the others are made while its call waits

        def make() -> None:
            for service in services:
                try:
                    self.client(service)
                except Exception:  # not kept: made again, and its error raised, where it is used
                    log.debug("making the %s client ahead failed", service, exc_info=True)

        thread = threading.Thread(target=make, name="clients-ahead", daemon=True)
        thread.start()
        return thread

    @property
    def began_changes(self) -> bool:
        """This command set out to change AWS (:meth:`before_changes`) or wrote the registry: on
        Ctrl-C, what it made so far is recorded, and that is worth saying."""
        return self._changing or (self._registry is not None and self._registry.changed)

    def check_namespace_owner(self) -> None:
        """Refuse to act on records whose account or region differ from the credentials'."""
        recorded = self.namespace.recorded_identity()
        for field, actual in (("account", self.account_id), ("region", self.region)):
            if recorded.get(field) not in (None, actual):
                raise credentials_error(
                    "wrong-account",
                    f"The registry namespace {self.namespace.key} records {field} "
                    f"{recorded[field]}, but the credentials are for {actual}.",
                    "Use the profile and region the resources were created with.",
                )


def _retry_config() -> dict[str, Any]:
    """Adaptive retries by default (standard for a rate-limited IoT client: see :meth:`client`);
    AWS_RETRY_MODE / AWS_MAX_ATTEMPTS win, as in the AWS CLI."""
    attempts = os.environ.get("AWS_MAX_ATTEMPTS") or str(MAX_ATTEMPTS)
    if not attempts.isdigit() or int(attempts) < 1:
        raise usage_error(
            "bad-max-attempts",
            f"AWS_MAX_ATTEMPTS must be a positive whole number, not {attempts!r}.",
            "Unset it to use iotbutton's default of 10 attempts.",
        )
    return {"mode": os.environ.get("AWS_RETRY_MODE") or "adaptive", "max_attempts": int(attempts)}


def _check_region(session: Any, region: str, service: str) -> None:
    """Reject a region botocore has never heard of, before any call goes astray."""
    known: set[str] = set()
    for partition in session.get_available_partitions():
        known.update(session.get_available_regions("sts", partition_name=partition))
    if not known or region in known:
        if known and region not in _service_regions(session, service):
            raise credentials_error(
                "service-not-in-region",
                f"AWS IoT Core is not available in {region}.",
                "Pick a region that offers AWS IoT Core, e.g. --region us-east-1.",
            )
        return
    import difflib

    close = difflib.get_close_matches(region, sorted(known), n=1)
    hint = f"Did you mean {close[0]}? " if close else ""
    raise credentials_error(
        "unknown-region",
        f"Unknown AWS region '{region}'.",
        hint + "Regions look like us-east-1 or eu-west-2; pass one with --region.",
    )


def _service_regions(session: Any, service: str) -> set[str]:
    regions: set[str] = set()
    for partition in session.get_available_partitions():
        regions.update(session.get_available_regions(service, partition_name=partition))
    return regions


def clean_error(exc: BaseException, ctx: AppContext | None = None) -> IotButtonError | None:
    """The :class:`IotButtonError` an exception stands for, or None for a real bug. With the
    command's ``ctx``, what is said of "AWS" is said of the sandbox in sandbox mode."""
    if isinstance(exc, IotButtonError):
        return exc
    from iotbutton_cli.aws.errors import translate

    error = translate(exc)
    if error is None and isinstance(exc, OSError):
        from iotbutton_cli.paths import file_error

        error = file_error(exc)
    if error is not None and error.code == "unreachable" and ctx is not None and ctx.sandbox:
        return sandbox_gone_error(ctx) or IotButtonError(
            "unreachable",
            error.message.replace("Could not reach AWS", "Could not reach the sandbox"),
            "Its process may have just died: run `iotbutton sandbox status`, then "
            "`iotbutton sandbox start`.",
            error.exit_status,
        )
    return error


def sandbox_gone_error(ctx: AppContext) -> IotButtonError | None:
    """``sandbox-stopped`` if the sandbox this command was using is no longer running (its
    process is gone, as `sandbox status` would say), else None: said at once, not after
    retries against its closed ports."""
    if not ctx.sandbox or "sandbox_info" not in ctx.__dict__:
        return None
    from iotbutton_cli.sandbox import client as sandbox_control

    used = ctx.sandbox_info
    now = sandbox_control.running()
    if now is not None and now.pid == used.pid:
        return None
    return IotButtonError(
        "sandbox-stopped",
        f"The sandbox (pid {used.pid}) stopped while this command ran, and what it held "
        "went with it.",
        "Run the command again: --sandbox starts a fresh, empty sandbox (`iotbutton sandbox "
        "start` does too).",
    )


def _check_endpoint_url(url: str | None) -> None:
    """Refuse an ``--endpoint-url`` / ``AWS_ENDPOINT_URL`` that is not an http(s) URL with a host
    (a typo would otherwise surface as a traceback from deep in botocore)."""
    if not url:
        return
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        problem = str(exc)
    else:
        problem = (
            ""
            if parts.scheme in ("http", "https") and parts.hostname
            else "it needs http:// or https:// and a host"
        )
    if problem:
        raise usage_error(
            "bad-endpoint-url",
            f"The endpoint URL {url!r} is not usable: {problem}.",
            "Give a URL such as http://127.0.0.1:5000 (a moto server), or drop --endpoint-url "
            "and unset AWS_ENDPOINT_URL.",
        )


def _mask_credentials(session: Any) -> None:
    """Keep the AWS secret key and session token out of -vv logs."""
    if not logging.getLogger("botocore").isEnabledFor(logging.DEBUG):
        return
    from iotbutton_cli.logsetup import register_secret

    credentials = session.get_credentials()
    if credentials is not None:
        frozen = credentials.get_frozen_credentials()
        register_secret(frozen.secret_key)
        register_secret(frozen.token)
