"""The tamper-evident audit log: one record per request (and per change to keys and
passports), leaves of an RFC 6962 Merkle tree in the state database, signed checkpoints,
inclusion and consistency proofs, offline verification. Guide: docs/security.md."""

from ironhold.audit.auditor import Auditor
from ironhold.audit.checkpoint import Checkpoint
from ironhold.audit.log import AuditLog
from ironhold.audit.stage import AuditStage
from ironhold.audit.store import AuditStore, StoredRecord
from ironhold.audit.verify import VerifyReport, verify_log

__all__ = ["AuditLog", "AuditStage", "AuditStore", "Auditor", "Checkpoint", "StoredRecord",
           "VerifyReport", "verify_log"]
