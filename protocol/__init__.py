"""The ajq wire protocol: message kinds, the msgpack codec with strict validation, error codes.

Shared by the broker, the worker and the client; imports nothing else of ajq. See SPEC.md.
"""

from protocol.codec import Frame, decode, decode_value, encode, encode_value
from protocol.errors import ErrorCode, ProtocolError
from protocol.limits import Limits
from protocol.messages import Kind
from protocol.states import FINAL_STATES, TaskState

PROTOCOL_VERSION = 1

__all__ = [
    "FINAL_STATES",
    "PROTOCOL_VERSION",
    "ErrorCode",
    "Frame",
    "Kind",
    "Limits",
    "ProtocolError",
    "TaskState",
    "decode",
    "decode_value",
    "encode",
    "encode_value",
]
