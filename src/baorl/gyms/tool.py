"""The one tool every baorl gym is played through: `interact_with_env(choice, content)`."""

from __future__ import annotations

CHOICES: tuple[str, ...] = ("action", "search", "answer")
TOOL_NAME = "interact_with_env"

#: OpenAI function-calling schema of the tool (also rendered into chat templates that take `tools=`).
INTERACT_TOOL: dict = {
    "type": "function",
    "function": {
        "name": TOOL_NAME,
        "description": (
            "Act in the environment. Use 'action' to query or probe, 'search' to look something up, "
            "and 'answer' to submit an answer for the user to judge. The environment's instructions "
            "say what each choice's content must look like."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "choice": {
                    "type": "string",
                    "enum": list(CHOICES),
                    "description": "which kind of interaction this is",
                },
                "content": {
                    "type": "string",
                    "description": "the query, search term or answer, in the format the environment asks for",
                },
            },
            "required": ["choice", "content"],
        },
    },
}
