"""Stage 2, on the driver: check each catalog entry's model, ship it to executors, register its functions.

``register`` drives it; ``inspect`` opens and checks a model, ``shipping`` sends it by content hash,
``describe`` writes the DESCRIBE FUNCTION text, ``devices`` checks GPU settings, ``hooks`` loads the
catalog's decoder hooks.
"""
from .inspect import ModelInfo, export_record, expected_sha256, inspect_model
from .register import (EVENT_LOG_CONF, MODEL_DIRS_CONF, ON_ERROR_CONF, Registered, prepare_task, register_catalog,
                       registrations, session_on_error, is_builtin)
from .shipping import ship_file, staging_dir

__all__ = ["EVENT_LOG_CONF", "MODEL_DIRS_CONF", "ON_ERROR_CONF", "ModelInfo", "Registered", "export_record",
           "expected_sha256", "inspect_model", "prepare_task", "register_catalog", "registrations",
           "session_on_error", "ship_file", "staging_dir", "is_builtin"]
