"""What to answer a server request when no handler decides: a refusal of the right shape.

Each known request method has its own result shape for "no"; a request we do not know gets a
JSON-RPC error instead. Either way the server is never left waiting.
"""

from __future__ import annotations

from typing import Any

COMMAND_APPROVAL = "item/commandExecution/requestApproval"
FILE_CHANGE_APPROVAL = "item/fileChange/requestApproval"
PERMISSIONS_APPROVAL = "item/permissions/requestApproval"
USER_INPUT = "item/tool/requestUserInput"
MCP_ELICITATION = "mcpServer/elicitation/request"
DYNAMIC_TOOL_CALL = "item/tool/call"
LEGACY_EXEC_APPROVAL = "execCommandApproval"
LEGACY_PATCH_APPROVAL = "applyPatchApproval"

APPROVAL_METHODS = frozenset(
    {
        COMMAND_APPROVAL,
        FILE_CHANGE_APPROVAL,
        PERMISSIONS_APPROVAL,
        LEGACY_EXEC_APPROVAL,
        LEGACY_PATCH_APPROVAL,
    }
)


def decline_result(method: str) -> dict[str, Any] | None:
    """The result that declines `method`, or None when we do not know the method."""
    if method in (COMMAND_APPROVAL, FILE_CHANGE_APPROVAL):
        return {"decision": "decline"}
    if method in (LEGACY_EXEC_APPROVAL, LEGACY_PATCH_APPROVAL):
        return {"decision": "denied"}
    if method == PERMISSIONS_APPROVAL:
        return {"permissions": {}, "scope": "turn"}
    if method == USER_INPUT:
        return {"answers": {}}
    if method == MCP_ELICITATION:
        return {"action": "decline", "content": None}
    if method == DYNAMIC_TOOL_CALL:
        return {
            "contentItems": [{"type": "inputText", "text": "no handler for client-side tools"}],
            "success": False,
        }
    return None


def decision_result(method: str, decision: str) -> dict[str, Any]:
    """The result for a plain decision word (`accept`, `decline`, `cancel`) on an approval."""
    if method in (LEGACY_EXEC_APPROVAL, LEGACY_PATCH_APPROVAL):
        legacy = {"accept": "approved", "decline": "denied", "cancel": "abort"}
        return {"decision": legacy.get(decision, decision)}
    if method == PERMISSIONS_APPROVAL:
        if decision == "accept":
            raise ValueError("accepting a permissions request needs the permissions to grant")
        return {"permissions": {}, "scope": "turn"}
    return {"decision": decision}
