"""Every Celery 5.7 setting name, as data: its old name, its default, and what we do with it."""

# Written once from Celery 5.7's list of settings (name, default, old upper-case name; the
# list is tests/data/celery-settings.tsv, which tests/test_celery_settings.py checks this
# against), then decided by hand, name by name. A setting is one of:
#
#   honoured  the core declares it and does what Celery does with it
#   plugin    honoured when the plugin `plugin` is enabled; a worker that is given it without
#             that plugin says so at start-up, naming the plugin
#   ignored   accepted and not used; a worker that is given it (other than at Celery's default)
#             says so once at start-up, with `note`: what to use instead, or why nothing is needed
#   refused   an error unless left at Celery's default: ignoring it would change what tasks do,
#             how often they run or where their messages and results go; `note` says why and
#             what is supported instead
#
# When a plugin comes to honour an ignored or refused name, it declares the setting and the
# entry here becomes `plugin` (tests/test_celery_settings.py fails until it does).

from __future__ import annotations

from datetime import timedelta
from typing import Any, NamedTuple

HONOURED, PLUGIN, IGNORED, REFUSED = "honoured", "plugin", "ignored", "refused"


class Known(NamedTuple):
    """What we do with one Celery setting."""

    what: str  # HONOURED, PLUGIN, IGNORED or REFUSED
    old: str  # Celery's old upper-case name (before 4.0), which Celery 5 still reads
    default: Any  # Celery's default: a value equal to it asks for nothing
    note: str = ""  # what to use instead, or why
    plugin: str = ""  # PLUGIN: the entry-point name of the plugin that honours it


def _h(old: str, default: Any, note: str = "") -> Known:
    return Known(HONOURED, old, default, note)


def _p(plugin: str, old: str, default: Any, note: str = "") -> Known:
    return Known(PLUGIN, old, default, note, plugin)


def _i(old: str, default: Any, note: str) -> Known:
    return Known(IGNORED, old, default, note)


def _r(old: str, default: Any, note: str) -> Known:
    return Known(REFUSED, old, default, note)


def other(backend: str) -> str:
    return f"an option of Celery's {backend} result backend, which has no plugin here (issue 26)"


# -- why a setting is refused (ignoring it would change what tasks do) -------------------------
ANNOTATIONS = (
    "it rewrites task options from configuration; set them on the tasks "
    "(@app.task(rate_limit=..., acks_late=...)) or with task_* settings"
)
ACKS_FAILURE = (
    "it decides whether a failed late-acked task is delivered again; "
    "use task_acks_on_failure_or_timeout"
)
ACKS_TIMEOUT = (
    "it decides whether a timed-out late-acked task is delivered again; "
    "use task_acks_on_failure_or_timeout"
)
INHERIT_PRIORITY = "it changes the priority of tasks sent from tasks; give priority= when sending"
RETRY_LOST = (
    "it runs a task again when its worker dies; use task_acks_late with task_reject_on_worker_lost"
)
EAGER_RESULTS = "eager results are not stored, so other clients would wait for them for ever"
CHORD_ERRBACKS = "it changes which error callbacks a chord runs; chords are issue 18"
DEDUPLICATE = "a redelivered task that already succeeded would run again"
FORKED = "prefork children are forked; use --pool threads where fork is unsafe for your code"
CONSUMER = (
    "a consumer class is not loaded; the consumer is a step "
    "(--plugin no:core.consumer and a plugin of your own)"
)
ONE_BROKER = "one broker_url is used for consuming and for publishing"
ONE_URL = "give one broker_url: transport://user:password@host:port/vhost"
BY_SCHEME = "the broker is picked by broker_url's scheme"
SQL_TABLES = "results are kept in Celery's default tables (celery_taskmeta, celery_tasksetmeta)"
SQL_SCHEMA = "results are kept in Celery's default tables, in the default schema"

# -- why an ignored setting needs nothing, or what to use instead ------------------------------
NOT_USED = "not used"
BEAT = "read by a beat scheduler: none here yet (issue 21); Celery beat can send to our workers"
EVENTS = "monitoring events are not sent yet (issue 19)"
CONTROL = "remote control is not implemented yet (issue 20)"
LOGS = "logging is set with -l/--loglevel and Python's logging configuration"
CHORDS = "chords are issue 18"
SECURITY = "message signing is not implemented yet (issue 23); task_serializer='auth' is refused"
QUORUM = "queues are declared classic; quorum queues and native delayed delivery are not used"
ROUTING = (
    "exchanges and bindings are not declared: a task goes through the default exchange to the "
    "queue task_routes or queue= names (issue 17, routing)"
)
QUEUES = (
    "a worker consumes -Q/worker_queues (default: task_default_queue), not every queue listed "
    "here: name them with -Q; " + ROUTING
)
DIRECT = "no per-worker queue is consumed; add one with -Q NAME"
FAIL_FAST = "a broker unreachable at start-up stops the worker with one line naming it"
FAILOVER = "several broker URLs separated by ';' are tried in order"
HEARTBEAT = "not used; broker_heartbeat sets the interval"
LOGIN = "not used: py-amqp's default login method is used"
POOLED = "nothing needed: connections are kept and reused per process"
DEAD_IN_CELERY = "Celery 5.7 itself never reads it (it is declared and documented only)"
AMQP_RESULTS = "for Celery's removed amqp result backend; rpc:// replies to each client's queue"
FAILURES_KEPT = "failures are kept for result_expires, as successes are"
BACKEND_RETRY = (
    "each result backend retries as its plugin does "
    "(Redis: retry_policy in result_backend_transport_options)"
)
REDIS_BACKEND = (
    "give them in the result_backend URL (redis://:password@host:port/db, "
    "rediss://...?ssl_cert_reqs=required) and socket_timeout in result_backend_transport_options"
)
SQL_URL = "give the URL as result_backend='db+postgresql://...'"
SQL_UNUSED = "not used by the db+ result backend"
SQL_CREATES = "the db+ result backend creates its tables when they are missing"
TRACEBACKS = "the worker's traceback is in AsyncResult.traceback"
REPRS = "nothing needed: argument reprs are cut at 1,024 characters"
AUTOSCALER = (
    "autoscaling is plugin autoscale (--plugin autoscale --autoscale MAX,MIN); "
    "a class path is not loaded"
)
NOT_CANCELLED = "running tasks are not cancelled when the broker connection is lost"
SOFT_SHUTDOWN = "a warm shutdown (SIGTERM) lets running tasks finish"
ETA_LIMIT = "no limit: a worker holds the eta tasks it receives until they are due"
NO_PREFETCH = "for the nearest, set worker_prefetch_multiplier=1 and worker_prefetch_adaptive=False"
CASSANDRA, S3, AZURE = other("Cassandra"), other("S3"), other("Azure Block Blob")
GCS, COSMOS, ELASTIC = other("Google Cloud Storage"), other("Cosmos DB"), other("Elasticsearch")
CACHE = other("cache (memcached)")

# -- notes on honoured and plugin settings -----------------------------------------------------
TLS = "TLS options for amqps://; Redis takes them in the rediss:// URL"
POOLS = "our default is threads; prefork, solo, gevent and eventlet are plugins"
NO_LIMITS_ANYWAY = "without it no rate limit applies anyway"
RPC_ONLY = "read by the rpc:// result backend only, as in Celery"

# Celery's log formats (the defaults of two settings we ignore)
LOG_FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s] %(message)s"
TASK_LOG_FORMAT = (
    "[%(asctime)s: %(levelname)s/%(processName)s] %(task_name)s[%(task_id)s]: %(message)s"
)

# name: what we do (Celery's old name, Celery's default, note)
CELERY_SETTINGS: dict[str, Known] = {
    "accept_content": _h("CELERY_ACCEPT_CONTENT", ("json",)),
    "result_accept_content": _h("RESULT_ACCEPT_CONTENT", None),
    "enable_utc": _h("ENABLE_UTC", True),
    "imports": _h("CELERY_IMPORTS", ()),
    "include": _h("CELERY_INCLUDE", ()),
    "timezone": _h("CELERY_TIMEZONE", None),
    "beat_enable_remote_control": _i("CELERYBEAT_ENABLE_REMOTE_CONTROL", False, BEAT),
    "beat_remote_control_max_tick_age": _i("CELERYBEAT_REMOTE_CONTROL_MAX_TICK_AGE", None, BEAT),
    "beat_max_loop_interval": _i("CELERYBEAT_MAX_LOOP_INTERVAL", 0, BEAT),
    "beat_schedule": _i("CELERYBEAT_SCHEDULE", {}, BEAT),
    "beat_scheduler": _i("CELERYBEAT_SCHEDULER", "celery.beat:PersistentScheduler", BEAT),
    "beat_schedule_filename": _i("CELERYBEAT_SCHEDULE_FILENAME", "celerybeat-schedule", BEAT),
    "beat_sync_every": _i("CELERYBEAT_SYNC_EVERY", 0, BEAT),
    "beat_cron_starting_deadline": _i("CELERYBEAT_CRON_STARTING_DEADLINE", None, BEAT),
    "broker_url": _h("BROKER_URL", None),
    "broker_read_url": _r("BROKER_READ_URL", None, ONE_BROKER),
    "broker_write_url": _r("BROKER_WRITE_URL", None, ONE_BROKER),
    "broker_transport": _r("BROKER_TRANSPORT", None, BY_SCHEME),
    "broker_transport_options": _h("BROKER_TRANSPORT_OPTIONS", {}),
    "broker_connection_timeout": _h("BROKER_CONNECTION_TIMEOUT", 4),
    "broker_connection_retry": _h("BROKER_CONNECTION_RETRY", True),
    "broker_connection_retry_on_startup": _i("BROKER_CONNECTION_RETRY_ON_STARTUP", None, FAIL_FAST),
    "broker_connection_max_retries": _h("BROKER_CONNECTION_MAX_RETRIES", 100),
    "broker_channel_error_retry": _i("BROKER_CHANNEL_ERROR_RETRY", False, NOT_USED),
    "broker_failover_strategy": _i("BROKER_FAILOVER_STRATEGY", None, FAILOVER),
    "broker_heartbeat": _h("BROKER_HEARTBEAT", 120, "AMQP; our default is 60 s"),
    "broker_heartbeat_checkrate": _i("BROKER_HEARTBEAT_CHECKRATE", 3.0, HEARTBEAT),
    "broker_login_method": _i("BROKER_LOGIN_METHOD", None, LOGIN),
    "broker_native_delayed_delivery_queue_type": _i(
        "BROKER_NATIVE_DELAYED_DELIVERY_QUEUE_TYPE", "quorum", QUORUM
    ),
    "broker_pool_limit": _i("BROKER_POOL_LIMIT", 10, POOLED),
    "broker_pool_acquire_timeout": _i("BROKER_POOL_ACQUIRE_TIMEOUT", None, POOLED),
    "broker_use_ssl": _h("BROKER_USE_SSL", False, TLS),
    "broker_host": _r("BROKER_HOST", None, ONE_URL),
    "broker_port": _r("BROKER_PORT", None, ONE_URL),
    "broker_user": _r("BROKER_USER", None, ONE_URL),
    "broker_password": _r("BROKER_PASSWORD", None, ONE_URL),
    "broker_vhost": _r("BROKER_VHOST", None, ONE_URL),
    "cache_backend": _i("CELERY_CACHE_BACKEND", None, CACHE),
    "cache_backend_options": _i("CELERY_CACHE_BACKEND_OPTIONS", {}, CACHE),
    "cassandra_entry_ttl": _i("CASSANDRA_ENTRY_TTL", None, CASSANDRA),
    "cassandra_keyspace": _i("CASSANDRA_KEYSPACE", None, CASSANDRA),
    "cassandra_port": _i("CASSANDRA_PORT", None, CASSANDRA),
    "cassandra_read_consistency": _i("CASSANDRA_READ_CONSISTENCY", None, CASSANDRA),
    "cassandra_servers": _i("CASSANDRA_SERVERS", None, CASSANDRA),
    "cassandra_bundle_path": _i("CASSANDRA_BUNDLE_PATH", None, CASSANDRA),
    "cassandra_table": _i("CASSANDRA_TABLE", None, CASSANDRA),
    "cassandra_write_consistency": _i("CASSANDRA_WRITE_CONSISTENCY", None, CASSANDRA),
    "cassandra_auth_provider": _i("CASSANDRA_AUTH_PROVIDER", None, CASSANDRA),
    "cassandra_auth_kwargs": _i("CASSANDRA_AUTH_KWARGS", None, CASSANDRA),
    "cassandra_options": _i("CASSANDRA_OPTIONS", {}, CASSANDRA),
    "s3_access_key_id": _i("S3_ACCESS_KEY_ID", None, S3),
    "s3_secret_access_key": _i("S3_SECRET_ACCESS_KEY", None, S3),
    "s3_bucket": _i("S3_BUCKET", None, S3),
    "s3_base_path": _i("S3_BASE_PATH", None, S3),
    "s3_endpoint_url": _i("S3_ENDPOINT_URL", None, S3),
    "s3_region": _i("S3_REGION", None, S3),
    "azureblockblob_container_name": _i("AZUREBLOCKBLOB_CONTAINER_NAME", "celery", AZURE),
    "azureblockblob_retry_initial_backoff_sec": _i(
        "AZUREBLOCKBLOB_RETRY_INITIAL_BACKOFF_SEC", 2, AZURE
    ),
    "azureblockblob_retry_increment_base": _i("AZUREBLOCKBLOB_RETRY_INCREMENT_BASE", 2, AZURE),
    "azureblockblob_retry_max_attempts": _i("AZUREBLOCKBLOB_RETRY_MAX_ATTEMPTS", 3, AZURE),
    "azureblockblob_base_path": _i("AZUREBLOCKBLOB_BASE_PATH", "", AZURE),
    "azureblockblob_connection_timeout": _i("AZUREBLOCKBLOB_CONNECTION_TIMEOUT", 20, AZURE),
    "azureblockblob_read_timeout": _i("AZUREBLOCKBLOB_READ_TIMEOUT", 120, AZURE),
    "gcs_bucket": _i("GCS_BUCKET", None, GCS),
    "gcs_project": _i("GCS_PROJECT", None, GCS),
    "gcs_base_path": _i("GCS_BASE_PATH", "", GCS),
    "gcs_ttl": _i("GCS_TTL", 0, GCS),
    "control_queue_ttl": _i("CONTROL_QUEUE_TTL", 300.0, CONTROL),
    "control_queue_expires": _i("CONTROL_QUEUE_EXPIRES", 10.0, CONTROL),
    "control_queue_exclusive": _i("CONTROL_QUEUE_EXCLUSIVE", True, CONTROL),
    "control_queue_durable": _i("CONTROL_QUEUE_DURABLE", False, CONTROL),
    "control_exchange": _i("CONTROL_EXCHANGE", "celery", CONTROL),
    "couchbase_backend_settings": _i("CELERY_COUCHBASE_BACKEND_SETTINGS", None, other("Couchbase")),
    "arangodb_backend_settings": _i("CELERY_ARANGODB_BACKEND_SETTINGS", None, other("ArangoDB")),
    "mongodb_backend_settings": _i("CELERY_MONGODB_BACKEND_SETTINGS", None, other("MongoDB")),
    "cosmosdbsql_database_name": _i("COSMOSDBSQL_DATABASE_NAME", "celerydb", COSMOS),
    "cosmosdbsql_collection_name": _i("COSMOSDBSQL_COLLECTION_NAME", "celerycol", COSMOS),
    "cosmosdbsql_consistency_level": _i("COSMOSDBSQL_CONSISTENCY_LEVEL", "Session", COSMOS),
    "cosmosdbsql_max_retry_attempts": _i("COSMOSDBSQL_MAX_RETRY_ATTEMPTS", 9, COSMOS),
    "cosmosdbsql_max_retry_wait_time": _i("COSMOSDBSQL_MAX_RETRY_WAIT_TIME", 30, COSMOS),
    "event_queue_expires": _i("CELERY_EVENT_QUEUE_EXPIRES", 60.0, EVENTS),
    "event_queue_ttl": _i("CELERY_EVENT_QUEUE_TTL", 5.0, EVENTS),
    "event_queue_prefix": _i("CELERY_EVENT_QUEUE_PREFIX", "celeryev", EVENTS),
    "event_queue_exclusive": _i("CELERY_EVENT_QUEUE_EXCLUSIVE", True, EVENTS),
    "event_queue_durable": _i("CELERY_EVENT_QUEUE_DURABLE", False, EVENTS),
    "event_serializer": _i("CELERY_EVENT_SERIALIZER", "json", EVENTS),
    "event_exchange": _i("CELERY_EVENT_EXCHANGE", "celeryev", EVENTS),
    "redis_backend_use_ssl": _i("CELERY_REDIS_BACKEND_USE_SSL", None, REDIS_BACKEND),
    "redis_db": _i("CELERY_REDIS_DB", None, REDIS_BACKEND),
    "redis_host": _i("CELERY_REDIS_HOST", None, REDIS_BACKEND),
    "redis_max_connections": _i("CELERY_REDIS_MAX_CONNECTIONS", None, REDIS_BACKEND),
    "redis_username": _i("CELERY_REDIS_USERNAME", None, REDIS_BACKEND),
    "redis_password": _i("CELERY_REDIS_PASSWORD", None, REDIS_BACKEND),
    "redis_port": _i("CELERY_REDIS_PORT", None, REDIS_BACKEND),
    "redis_socket_timeout": _i("CELERY_REDIS_SOCKET_TIMEOUT", 120.0, REDIS_BACKEND),
    "redis_socket_connect_timeout": _i("CELERY_REDIS_SOCKET_CONNECT_TIMEOUT", None, REDIS_BACKEND),
    "redis_retry_on_timeout": _i("CELERY_REDIS_RETRY_ON_TIMEOUT", False, REDIS_BACKEND),
    "redis_socket_keepalive": _i("CELERY_REDIS_SOCKET_KEEPALIVE", False, REDIS_BACKEND),
    "result_backend": _h("CELERY_RESULT_BACKEND", None),
    "result_cache_max": _i("CELERY_MAX_CACHED_RESULTS", -1, NOT_USED),
    "result_compression": _i("CELERY_RESULT_COMPRESSION", None, DEAD_IN_CELERY),
    "result_exchange": _i("CELERY_RESULT_EXCHANGE", "celeryresults", AMQP_RESULTS),
    "result_exchange_type": _i("CELERY_RESULT_EXCHANGE_TYPE", "direct", AMQP_RESULTS),
    "result_expires": _h("CELERY_TASK_RESULT_EXPIRES", timedelta(days=1)),
    "result_chord_expires": _i("CELERY_RESULT_CHORD_EXPIRES", None, CHORDS),
    "result_failure_expires": _i("CELERY_RESULT_FAILURE_EXPIRES", None, FAILURES_KEPT),
    "result_persistent": _p("backend.rpc", "CELERY_RESULT_PERSISTENT", None, RPC_ONLY),
    "result_extended": _h("CELERY_RESULT_EXTENDED", False),
    "result_serializer": _h("CELERY_RESULT_SERIALIZER", "json"),
    "result_backend_transport_options": _h("CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS", {}),
    "result_chord_retry_interval": _i("CELERY_RESULT_CHORD_RETRY_INTERVAL", 1.0, CHORDS),
    "result_chord_join_timeout": _i("CELERY_RESULT_CHORD_JOIN_TIMEOUT", 3.0, CHORDS),
    "result_backend_max_sleep_between_retries_ms": _i(
        "CELERY_RESULT_BACKEND_MAX_SLEEP_BETWEEN_RETRIES_MS", 10000, BACKEND_RETRY
    ),
    "result_backend_max_retries": _i(
        "CELERY_RESULT_BACKEND_MAX_RETRIES", float("inf"), BACKEND_RETRY
    ),
    "result_backend_base_sleep_between_retries_ms": _i(
        "CELERY_RESULT_BACKEND_BASE_SLEEP_BETWEEN_RETRIES_MS", 10, BACKEND_RETRY
    ),
    "result_backend_always_retry": _i("CELERY_RESULT_BACKEND_ALWAYS_RETRY", False, BACKEND_RETRY),
    "elasticsearch_retry_on_timeout": _i("CELERY_ELASTICSEARCH_RETRY_ON_TIMEOUT", None, ELASTIC),
    "elasticsearch_max_retries": _i("CELERY_ELASTICSEARCH_MAX_RETRIES", None, ELASTIC),
    "elasticsearch_timeout": _i("CELERY_ELASTICSEARCH_TIMEOUT", None, ELASTIC),
    "elasticsearch_save_meta_as_text": _i("CELERY_ELASTICSEARCH_SAVE_META_AS_TEXT", True, ELASTIC),
    "security_certificate": _i("CELERY_SECURITY_CERTIFICATE", None, SECURITY),
    "security_cert_store": _i("CELERY_SECURITY_CERT_STORE", None, SECURITY),
    "security_key": _i("CELERY_SECURITY_KEY", None, SECURITY),
    "security_key_password": _i("CELERY_SECURITY_KEY_PASSWORD", None, SECURITY),
    "security_digest": _i("CELERY_SECURITY_DIGEST", "sha256", SECURITY),
    "database_url": _i("CELERY_RESULT_DBURI", None, SQL_URL),
    "database_engine_options": _i(
        "CELERY_RESULT_ENGINE_OPTIONS", {"pool_pre_ping": True, "pool_recycle": 3600}, SQL_UNUSED
    ),
    "database_engine_callback": _i("DATABASE_ENGINE_CALLBACK", None, SQL_UNUSED),
    "database_short_lived_sessions": _i("CELERY_RESULT_DB_SHORT_LIVED_SESSIONS", False, SQL_UNUSED),
    "database_table_schemas": _r("DATABASE_TABLE_SCHEMAS", None, SQL_SCHEMA),
    "database_table_names": _r("CELERY_RESULT_DB_TABLENAMES", None, SQL_TABLES),
    "database_create_tables_at_setup": _i("DATABASE_CREATE_TABLES_AT_SETUP", True, SQL_CREATES),
    "task_acks_late": _h("CELERY_ACKS_LATE", False),
    "task_acks_on_failure_or_timeout": _h("CELERY_ACKS_ON_FAILURE_OR_TIMEOUT", True),
    "task_acks_on_failure": _r("CELERY_ACKS_ON_FAILURE", None, ACKS_FAILURE),
    "task_acks_on_timeout": _r("CELERY_ACKS_ON_TIMEOUT", None, ACKS_TIMEOUT),
    "task_always_eager": _h("CELERY_ALWAYS_EAGER", False),
    "task_annotations": _r("CELERY_ANNOTATIONS", None, ANNOTATIONS),
    "task_compression": _h("CELERY_MESSAGE_COMPRESSION", None),
    "task_create_missing_queues": _h("CELERY_CREATE_MISSING_QUEUES", True),
    "task_create_missing_queue_type": _i("CELERY_CREATE_MISSING_QUEUE_TYPE", "classic", QUORUM),
    "task_create_missing_queue_exchange_type": _i(
        "CELERY_CREATE_MISSING_QUEUE_EXCHANGE_TYPE", None, ROUTING
    ),
    "task_inherit_parent_priority": _r("CELERY_INHERIT_PARENT_PRIORITY", False, INHERIT_PRIORITY),
    "task_default_delivery_mode": _h("CELERY_DEFAULT_DELIVERY_MODE", 2),
    "task_default_queue": _h("CELERY_DEFAULT_QUEUE", "celery"),
    "task_default_queue_type": _i("CELERY_DEFAULT_QUEUE_TYPE", "classic", QUORUM),
    "task_default_exchange": _i("CELERY_DEFAULT_EXCHANGE", None, ROUTING),
    "task_default_exchange_type": _i("CELERY_DEFAULT_EXCHANGE_TYPE", "direct", ROUTING),
    "task_default_routing_key": _i("CELERY_DEFAULT_ROUTING_KEY", None, ROUTING),
    "task_default_rate_limit": _p("ratelimit", "CELERY_DEFAULT_RATE_LIMIT", None),
    "task_default_priority": _h("CELERY_DEFAULT_PRIORITY", None),
    "task_eager_propagates": _h("CELERY_EAGER_PROPAGATES_EXCEPTIONS", False),
    "task_ignore_result": _h("CELERY_IGNORE_RESULT", False),
    "task_store_eager_result": _r("CELERY_STORE_EAGER_RESULT", False, EAGER_RESULTS),
    "task_protocol": _h("CELERY_TASK_PROTOCOL", 2, "protocol 2 is sent; 1 is read too"),
    "task_publish_retry": _h("CELERY_TASK_PUBLISH_RETRY", True),
    "task_publish_retry_policy": _h(
        "CELERY_TASK_PUBLISH_RETRY_POLICY",
        {"max_retries": 3, "interval_start": 0, "interval_max": 1, "interval_step": 0.2},
    ),
    "task_queues": _i("CELERY_QUEUES", None, QUEUES),
    "task_queue_max_priority": _h("CELERY_QUEUE_MAX_PRIORITY", None),
    "task_reject_on_worker_lost": _h("CELERY_REJECT_ON_WORKER_LOST", None),
    "task_retry_on_worker_lost": _r("CELERY_RETRY_ON_WORKER_LOST", False, RETRY_LOST),
    "task_remote_tracebacks": _i("CELERY_REMOTE_TRACEBACKS", False, TRACEBACKS),
    "task_repr_maxlevels": _i("CELERY_REPR_MAXLEVELS", 3, REPRS),
    "task_routes": _h("CELERY_ROUTES", None),
    "task_send_sent_event": _i("CELERY_SEND_TASK_SENT_EVENT", False, EVENTS),
    "task_serializer": _h("CELERY_TASK_SERIALIZER", "json"),
    "task_soft_time_limit": _h("CELERYD_TASK_SOFT_TIME_LIMIT", None),
    "task_time_limit": _h("CELERYD_TASK_TIME_LIMIT", None),
    "task_store_errors_even_if_ignored": _h("CELERY_STORE_ERRORS_EVEN_IF_IGNORED", False),
    "task_track_started": _h("CELERY_TRACK_STARTED", False),
    "task_allow_error_cb_on_chord_header": _r(
        "CELERY_ALLOW_ERROR_CB_ON_CHORD_HEADER", False, CHORD_ERRBACKS
    ),
    "worker_agent": _i("CELERYD_AGENT", None, NOT_USED),
    "worker_autoscaler": _i("CELERYD_AUTOSCALER", "celery.worker.autoscale:Autoscaler", AUTOSCALER),
    "worker_cancel_long_running_tasks_on_connection_loss": _i(
        "CELERYD_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS", False, NOT_CANCELLED
    ),
    "worker_soft_shutdown_timeout": _i("CELERYD_SOFT_SHUTDOWN_TIMEOUT", 0.0, SOFT_SHUTDOWN),
    "worker_enable_soft_shutdown_on_idle": _i(
        "CELERYD_ENABLE_SOFT_SHUTDOWN_ON_IDLE", False, SOFT_SHUTDOWN
    ),
    "worker_concurrency": _h("CELERYD_CONCURRENCY", None),
    "worker_consumer": _r("CELERYD_CONSUMER", "celery.worker.consumer:Consumer", CONSUMER),
    "worker_direct": _i("CELERY_WORKER_DIRECT", False, DIRECT),
    "worker_disable_rate_limits": _p(
        "ratelimit", "CELERY_DISABLE_RATE_LIMITS", False, NO_LIMITS_ANYWAY
    ),
    "worker_deduplicate_successful_tasks": _r(
        "CELERYD_DEDUPLICATE_SUCCESSFUL_TASKS", False, DEDUPLICATE
    ),
    "worker_enable_remote_control": _i("CELERY_ENABLE_REMOTE_CONTROL", True, CONTROL),
    "worker_hijack_root_logger": _i("CELERYD_HIJACK_ROOT_LOGGER", True, LOGS),
    "worker_log_color": _i("CELERYD_LOG_COLOR", None, LOGS),
    "worker_log_datefmt": _i("CELERYD_LOG_DATEFMT", None, LOGS),
    "worker_log_format": _i("CELERYD_LOG_FORMAT", LOG_FORMAT, LOGS),
    "worker_lost_wait": _i("CELERYD_WORKER_LOST_WAIT", 10.0, NOT_USED),
    "worker_max_memory_per_child": _p("maxtasks", "CELERYD_MAX_MEMORY_PER_CHILD", None),
    "worker_max_tasks_per_child": _p("maxtasks", "CELERYD_MAX_TASKS_PER_CHILD", None),
    "worker_pool": _h("CELERYD_POOL", "prefork", POOLS),
    "worker_pool_putlocks": _i("CELERYD_POOL_PUTLOCKS", True, NOT_USED),
    "worker_pool_restarts": _i("CELERYD_POOL_RESTARTS", False, CONTROL),
    "worker_pool_start_method": _r("CELERYD_POOL_START_METHOD", "fork", FORKED),
    "worker_proc_alive_timeout": _i("CELERYD_PROC_ALIVE_TIMEOUT", 4.0, NOT_USED),
    "worker_prefetch_multiplier": _h("CELERYD_PREFETCH_MULTIPLIER", 4),
    "worker_eta_task_limit": _i("CELERYD_ETA_TASK_LIMIT", None, ETA_LIMIT),
    "worker_enable_prefetch_count_reduction": _i(
        "CELERYD_ENABLE_PREFETCH_COUNT_REDUCTION", True, NOT_USED
    ),
    "worker_disable_prefetch": _i("CELERYD_DISABLE_PREFETCH", False, NO_PREFETCH),
    "worker_redirect_stdouts": _i("CELERY_REDIRECT_STDOUTS", True, LOGS),
    "worker_redirect_stdouts_level": _i("CELERY_REDIRECT_STDOUTS_LEVEL", "WARNING", LOGS),
    "worker_send_task_events": _i("CELERY_SEND_EVENTS", False, EVENTS),
    "worker_state_db": _i("CELERYD_STATE_DB", None, CONTROL),
    "worker_task_log_datefmt": _i("CELERYD_TASK_LOG_DATEFMT", None, LOGS),
    "worker_task_log_format": _i("CELERYD_TASK_LOG_FORMAT", TASK_LOG_FORMAT, LOGS),
    "worker_timer": _i("CELERYD_TIMER", None, NOT_USED),
    "worker_timer_precision": _i("CELERYD_TIMER_PRECISION", 1.0, NOT_USED),
    "worker_detect_quorum_queues": _i("CELERYD_DETECT_QUORUM_QUEUES", True, QUORUM),
}

# Celery's old upper-case names (CELERYD_CONCURRENCY, BROKER_URL, ...) -> the names above
OLD_NAMES: dict[str, str] = {known.old: name for name, known in CELERY_SETTINGS.items()}
