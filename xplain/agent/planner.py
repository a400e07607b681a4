"""The grounded planner: a chat that answers well on models too small to drive tools freely (the embedded 135M).

The LLM only chooses. Rules read the question first (`xplain.agent.questions`): the operation its words point to,
row ids, feature names, edits and values, checked against the model and its data. Where the rules leave a choice
open (no cue, or a tie), the LLM scores each candidate operation's description as a continuation of the question —
one short `score` call — and likewise picks a feature when an edit names none the rules recognise. The tool runs;
the answer is a template filled with the tool's numbers. With `rephrase`, the LLM may reword it, and the rewording
is kept only if every number and name of the template survived and it adds none. Follow-ups ("and for row 5?",
"what about the second feature?") resolve against the state the previous turn left in the conversation.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

import numpy as np
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import BaseTool
from pydantic import BaseModel, Field

from xplain.agent import questions as q
from xplain.agent.answers import answer_for, render_failure, templates_ref, tool_payload
from xplain.agent.grounding import numbers_in_text, source_numbers, ungrounded_numbers
from xplain.agent.loop import (
    AgentAnswer,
    AnswerDeltaEvent,
    AnswerEvent,
    ToolCallEvent,
    ToolCallRecord,
    ToolResultEvent,
    answer_chunks,
    check_question,
)
from xplain.agent.store import ConversationStore
from xplain.errors import XplainError, describe
from xplain.llm import (
    LLM,
    GenerationRequest,
    ScoreRequest,
    Scores,
    track_usage,
)
from xplain.methods.catalog import Method, catalog
from xplain.prompts import load_prompt
from xplain.tools import ProbeContext, build_tools

#: The operation a question that names only a row asks for, and the one a follow-up naming only a feature does.
ROW_DEFAULT, FEATURE_DEFAULT = "predict", "global_effects"
#: What the chat compares when a question names fewer than two explainers: the black box's own (fast, no LLM),
#: each built from this many of its rows.
CHAT_EXPLAINERS = ["occlusion", "lime", "kernelshap"]
CHAT_COMPARE_ROWS = 200


class OutOfScope(ValueError):
    """A question the chat does not answer (not about the model and its data, or instructions to the chat)."""
STATE_KEY = "xplain_plan"
CHOOSE_PROMPT, FEATURE_PROMPT, REPHRASE_PROMPT = "chat/choose", "chat/feature", "chat/rephrase"
REPHRASE_TOKENS = 160


class Plan(BaseModel):
    """What the planner decided for one question, and who decided the operation (rules, the LLM, the follow-up)."""

    operation: str = Field(description="A catalog method the chat offers (one with a `ChatForm`).")
    arguments: dict[str, Any] = Field(description="Row, feature, edits, target... as read from the question.")
    chosen_by: Literal["rules", "llm", "follow-up"]
    tool: str
    tool_arguments: dict[str, Any]
    notes: list[str] = Field(default_factory=list, description="Defaults the planner filled in, said to the user.")
    rephrased: bool | None = Field(None, description="With rephrasing on: whether the LLM's wording was kept.")


class PlanState(BaseModel):
    """What a turn leaves for the next one to resolve follow-ups against."""

    operation: str | None = None
    row: int | None = None
    text: str | None = None
    feature: str | None = None
    ranked: list[str] = Field(default_factory=list, description="Inputs ranked by the last answer, largest first.")
    arguments: dict[str, Any] = Field(default_factory=dict)


class GroundedPlanner:
    """Answers questions about one black box with one tool call chosen by rules and (at most) short LLM scoring."""

    def __init__(
        self,
        llm: LLM | None,
        context: ProbeContext,
        *,
        store: ConversationStore | None = None,
        tools: list[BaseTool] | None = None,
        rephrase: bool = False,
        llm_chooses: bool = False,
    ) -> None:
        """`llm_chooses` skips the rules' operation cues and lets the LLM choose every operation (an ablation that
        measures what the LLM alone would get right)."""
        if llm is not None and context.llm is None:
            context.llm = llm  # the counterfactual tool asks the same LLM
        self.llm = llm
        self.context = context
        self.store = store
        self.rephrase = rephrase and llm is not None
        self.tools = {t.name: t for t in (tools if tools is not None else build_tools(context))}
        #: operation -> method: every catalog method that declares how the chat reaches it, on this model
        self.operations: dict[str, Method] = {
            m.name: m for m in catalog().values() if m.chat is not None and m.name in self.tools
        }
        self.row_operations = {name for name, m in self.operations.items() if m.unit == "row"}
        self.cues = {
            name: [(re.compile(cue, re.IGNORECASE), weight) for cue, weight in m.chat.weighted_cues()]
            for name, m in self.operations.items()
        }
        self.llm_chooses = llm_chooses
        self._memory: dict[str, PlanState] = {}  # sessions without a store
        self._priors: dict[tuple[str, ...], list[float]] = {}

    # -- one turn ---------------------------------------------------------------------------------------------

    async def ask(self, session_id: str, question: str) -> AgentAnswer:
        async for event in self.stream(session_id, question):
            if isinstance(event, AnswerEvent):
                return event.answer
        raise RuntimeError("the planner ended a turn without an answer")

    async def stream(
        self, session_id: str, question: str
    ) -> AsyncIterator[ToolCallEvent | ToolResultEvent | AnswerDeltaEvent | AnswerEvent]:
        started = time.perf_counter()
        question = check_question(session_id, question)
        state = self._state(session_id)
        calls: list[ToolCallRecord] = []
        versions = [templates_ref()]
        with track_usage() as meter:
            try:
                plan = await self.plan(question, state)
            except OutOfScope as error:
                plan, text, result = None, str(error), None
            except ValueError as error:
                plan, text, result = None, f"I could not read that question: {error}", None
            else:
                call_id = f"call_{uuid.uuid4().hex[:12]}"
                yield ToolCallEvent(id=call_id, name=plan.tool, arguments=plan.tool_arguments)
                message = await self._run(plan, call_id)
                result, error = tool_payload(message)
                record = ToolCallRecord(id=call_id, name=plan.tool, arguments=plan.tool_arguments,
                                        output=str(message.text), error=error)  # fmt: skip
                calls.append(record)
                yield ToolResultEvent(id=call_id, name=plan.tool, output=record.output, result=result, error=error)
                if result is None:
                    text = render_failure(plan.tool, error or "it failed")
                else:
                    text = answer_for(plan.tool, result)
                    if plan.notes:
                        text += " (" + "; ".join(plan.notes) + ".)"
                    if self.rephrase:
                        template = text
                        text = await self._rephrased(question, text, result)
                        plan.rephrased = text != template
                        versions.append(load_prompt(REPHRASE_PROMPT).ref)
        sources = source_numbers([question, *(c.arguments for c in calls), *(c.output for c in calls)])
        answer = AgentAnswer(
            session_id=session_id,
            question=question,
            text=text,
            tool_calls=calls,
            ungrounded_numbers=ungrounded_numbers(text, sources),
            stopped="answered",
            model_calls=meter.usage.calls,
            usage=meter.usage,
            prompt_versions=versions,
            mode="planner",
            plan=plan.model_dump() if plan else None,
        )
        self._remember(session_id, question, answer, plan, result, state)
        for chunk in answer_chunks(text):
            yield AnswerDeltaEvent(text=chunk)
        answer.seconds = round(time.perf_counter() - started, 3)
        yield AnswerEvent(answer=answer)

    async def _run(self, plan: Plan, call_id: str) -> ToolMessage:
        tool = self.tools.get(plan.tool)
        if tool is None:
            return ToolMessage(
                content=f'{{"error": "the {plan.tool} tool is not available for this model"}}',
                tool_call_id=call_id, name=plan.tool, status="error",
            )  # fmt: skip
        call = {"name": plan.tool, "args": plan.tool_arguments, "id": call_id, "type": "tool_call"}
        try:
            return await tool.ainvoke(call)
        except (XplainError, ValueError) as error:  # a method tool that failed: a failure, said plainly
            return ToolMessage(content=describe(error)[1], tool_call_id=call_id, name=plan.tool, status="error")

    # -- planning ---------------------------------------------------------------------------------------------

    async def plan(self, question: str, state: PlanState | None = None) -> Plan:
        """The operation and arguments for `question`, given the previous turn's `state`."""
        state = state or PlanState()
        if q.gives_instructions(question):
            raise OutOfScope(f"I follow no instructions given in a question. {self._offer()}")
        context = self.context
        names = context.feature_names if context.kind == "tabular" else []
        mentions = q.find_features(question, names)
        masked = q.mask_classes(q.mask(question, mentions), context.class_names)
        row = q.find_row(masked)
        quoted = q.find_quoted(question, min_words=3) if context.kind == "text" else []
        text_edits = q.find_text_edits(question) if context.kind == "text" else []
        ordinal = q.find_ordinal_feature(masked)
        word = self._word(question) if context.kind == "text" else None

        operation, chosen_by = await self._operation(question, masked, state, row, mentions, ordinal, quoted, word)
        # a follow-up keeps what the last turn said unless this question says otherwise
        arguments: dict[str, Any] = dict(state.arguments) if chosen_by == "follow-up" else {}
        arguments.pop("row", None), arguments.pop("text", None)
        notes: list[str] = []
        feature = mentions[0].feature if mentions else None
        if feature is None and ordinal is not None and ordinal < len(state.ranked):
            feature = state.ranked[ordinal]
            notes.append(f"{feature} is {ORDINAL_WORDS.get(ordinal, 'next')} in the last answer's ranking")
        if feature is None and word is not None:
            feature = word
        if operation in self.row_operations:
            text_input = quoted[0] if quoted and not text_edits else None
            if text_input is not None:
                arguments["text"] = text_input
            elif row is not None:
                arguments["row"] = row
            elif state.row is not None:
                arguments["row"] = state.row
            elif state.text is not None:
                arguments["text"] = state.text
            else:
                arguments["row"] = 0
                notes.append("no row named, so I used row 0; ask about another with 'row N'")
            if "row" in arguments:
                context.row(arguments["row"])  # a clear error for a row that does not exist
        # what the question says, given to the options the chosen method has (edits, target, kept features...)
        method = self.operations[operation]
        fields = method.options.model_fields
        if "changes" in fields and context.kind == "tabular":
            edits = q.find_edits(question, mentions) or arguments.get("edits")
            arguments["edits"] = edits or await self._edits_by_llm(question, masked)
            relative = [words for words in map(q.said, arguments["edits"]) if words]
            if relative:
                notes.append(f"read as {', '.join(relative)}")
        if "replacements" in fields and context.kind == "text":
            arguments["replacements"] = text_edits or arguments.get("replacements", [])
        if "target" in fields:
            target = q.find_class(q.mask(question, mentions), context.class_names)
            if target is not None:
                arguments["target"] = target
        if "keep" in fields or "constraints" in fields:
            kept = q.find_kept(question, mentions)
            if kept:
                arguments["keep"] = kept
        if "explainers" in fields:
            named = q.find_explainers(masked)
            arguments["explainers"] = named if len(named) >= 2 else arguments.get("explainers", CHAT_EXPLAINERS)
        count = q.find_count(masked) if method.chat.count else None
        if count:
            limits = fields[method.chat.count].metadata
            low = max([getattr(m, "ge", None) for m in limits if getattr(m, "ge", None) is not None], default=0)
            high = min([getattr(m, "le", None) for m in limits if getattr(m, "le", None) is not None], default=count)
            arguments[method.chat.count] = max(low, min(count, high))
        if "feature" in fields and feature is not None:
            arguments["feature"] = feature
        if "row" in fields and operation not in self.row_operations and feature is None and row is not None:
            arguments["row"] = row  # a row of the data shown by a method of the whole data
        tool, tool_arguments = self._tool_call(operation, arguments)
        return Plan(operation=operation, arguments=arguments, chosen_by=chosen_by, tool=tool,
                    tool_arguments=tool_arguments, notes=notes)  # fmt: skip

    async def _operation(
        self,
        question: str,
        masked: str,
        state: PlanState,
        row: int | None,
        mentions: list[q.Mention],
        ordinal: int | None,
        quoted: list[str],
        word: str | None,
    ) -> tuple[str, Literal["rules", "llm", "follow-up"]]:
        available = list(self.operations)
        if self.llm_chooses:
            return await self._choose(question, available), "llm"
        scores = q.cue_scores(masked, self.cues)
        scores = {op: s for op, s in scores.items() if op in available}
        if scores:
            best = max(scores.values())
            leaders = [op for op, s in scores.items() if s == best]
            if len(leaders) == 1:
                return leaders[0], "rules"
            return await self._choose(question, leaders), "llm"
        # no cue: an elliptical follow-up that names only a new row, feature or text keeps (or adapts) the last
        # operation; a full question without cues goes to the LLM instead
        if state.operation in self.operations and _elliptical(question):
            takes = self.operations[state.operation].options.model_fields
            if (row is not None or quoted) and (state.operation in self.row_operations or "row" in takes):
                return state.operation, "follow-up"
            named = mentions or ordinal is not None or word is not None
            if named and ("feature" in takes or FEATURE_DEFAULT in available):
                return (state.operation if "feature" in takes else FEATURE_DEFAULT), "follow-up"
        if row is not None and not mentions and ROW_DEFAULT in available:
            return ROW_DEFAULT, "rules"
        if not (mentions or quoted or ordinal is not None or word is not None or q.about_the_model(masked)):
            raise OutOfScope(f"That is not a question about this model or its data. {self._offer()}")
        return await self._choose(question, [op for op in available if self._answerable(op, question, masked)]), "llm"

    def _answerable(self, operation: str, question: str, masked: str) -> bool:
        """Whether the question gives what the operation needs: an edit needs a value (tables: a number; texts: a
        replacement), so a question with none is no what-if, whichever description the LLM would prefer."""
        fields = self.operations[operation].options.model_fields
        if "changes" in fields and self.context.kind == "tabular":
            return bool(numbers_in_text(masked))
        if "replacements" in fields and self.context.kind == "text":
            return bool(q.find_text_edits(question))
        return True

    def _offer(self) -> str:
        """What the chat can answer, from the operations this model has."""
        offered = ", ".join(op.replace("_", " ") for op in self.operations)
        return f"I answer questions about this model and its data ({offered}); for example: 'why did the model predict row N?'"

    async def _choose(self, question: str, candidates: list[str]) -> str:
        """The LLM's choice among `candidates`: the description whose log-probability the question raises most over
        a question-free prompt (pointwise mutual information; a small model otherwise favours whichever description
        is likeliest anyway). The question-free scores are computed once per set of candidates."""
        if self.llm is None or len(candidates) == 1:
            return candidates[0]
        kind = "rows of a table" if self.context.kind == "tabular" else "texts"
        continuations = [self.operations[c].chat.asks for c in candidates]
        prompt = load_prompt(CHOOSE_PROMPT).render(kind=kind, question=question)
        key = tuple(candidates)
        requests = [ScoreRequest(prompt=prompt, continuations=continuations)]
        if key not in self._priors:
            neutral = load_prompt(CHOOSE_PROMPT).render(kind=kind, question="(no question)")
            requests.append(ScoreRequest(prompt=neutral, continuations=continuations))
        scored = await self.llm.score(requests)
        if key not in self._priors:
            self._priors[key] = scored[1].logprobs
        gains = [lp - prior for lp, prior in zip(scored[0].logprobs, self._priors[key])]
        return candidates[int(np.argmax(gains))]

    async def _edits_by_llm(self, question: str, masked: str) -> list[dict[str, Any]]:
        """An edit whose feature the rules did not recognise: the LLM picks the feature, the number is the
        question's own (a value given in words is not guessed)."""
        numbers = [n for n in numbers_in_text(masked) if "%" not in n]
        row = q.find_row(masked)
        numbers = [n for n in numbers if row is None or float(n) != row]
        if not numbers or self.llm is None:
            raise ValueError(
                "name the feature and its new value, e.g. 'what if <feature> were doubled?' "
                f"(features: {', '.join(self.context.feature_names[:12])}…)"
            )
        names = self.context.feature_names
        prompt = load_prompt(FEATURE_PROMPT).render(features=", ".join(names), question=question)
        [scores] = await self.llm.score([ScoreRequest(prompt=prompt, continuations=[f" {n}" for n in names])])
        return [{"feature": names[_likeliest(scores)], "set": float(numbers[0].replace(",", ""))}]

    def _word(self, question: str) -> str | None:
        """The one word a text question asks about: 'the word "bad"', or a single quoted word."""
        match = re.search(r"\bthe word\s+[\"“']?(\w[\w-]*)", question, re.IGNORECASE)
        if match:
            return match.group(1).lower()
        single = [x for x in q.find_quoted(question) if len(x.split()) == 1]
        return single[0].lower() if single else None

    def _tool_call(self, operation: str, arguments: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The tool and its arguments for a plan: the row or text for a row method, the options the plan read; edits
        become the values the method sets, checked against the row."""
        fields = self.operations[operation].options.model_fields
        source = {k: arguments[k] for k in ("row", "text") if k in arguments}
        given = {k: v for k, v in arguments.items() if k in fields and k not in ("changes", "replacements")}
        if "constraints" in fields and arguments.get("keep"):  # features the question keeps, as constraints
            given["constraints"] = {feature: {"immutable": True} for feature in arguments["keep"]}
        if "explainers" in fields:  # a comparison in the chat: the black box's own explainers, quick
            given.update(k=4, n_samples=CHAT_COMPARE_ROWS)
        context = self.context
        if "changes" in fields and context.kind == "tabular":
            if "row" not in source:
                raise ValueError("a what-if edits a row of the data: name one, e.g. 'row 3'")
            values = np.asarray(context.row(source["row"]), dtype=float)
            changes = []
            for edit in arguments["edits"]:
                current = float(values[context.feature_index(edit["feature"])])
                if "set" in edit:
                    value = edit["set"]
                elif "scale" in edit:
                    value = current * edit["scale"]
                else:
                    value = current + edit["add"]
                changes.append({"feature": edit["feature"], "value": round(float(value), 6)})
            given["changes"] = changes
        if "replacements" in fields and context.kind == "text":
            replacements = [self._exact_replacement(r, source) for r in arguments.get("replacements", [])]
            if not replacements:
                raise ValueError("say which words to change, e.g. \"what if 'good' were replaced with 'bad'?\"")
            given["replacements"] = replacements
        return operation, {**source, **given}

    def _exact_replacement(self, replacement: dict[str, str], source: dict[str, Any]) -> dict[str, str]:
        """The replacement with `old` spelled as the text has it (the tool matches exactly; users don't)."""
        text = source.get("text") if "text" in source else self.context.row(source["row"]) if "row" in source else ""
        match = re.search(rf"(?i)\b{re.escape(replacement['old'])}\b", str(text))
        old = match.group(0) if match else replacement["old"]
        return {"old": old, "new": replacement["new"]}

    # -- rephrasing -------------------------------------------------------------------------------------------

    async def _rephrased(self, question: str, template: str, result: dict[str, Any]) -> str:
        prompt = load_prompt(REPHRASE_PROMPT).render(question=question, answer=template)
        [completion] = await self.llm.generate([GenerationRequest.user(prompt, max_tokens=REPHRASE_TOKENS)])
        candidate = completion.text.strip()
        return candidate if survives(template, candidate, self._names(), [question, result]) else template

    def _names(self) -> list[str]:
        return [*self.context.feature_names, *self.context.class_names] if self.context.kind == "tabular" else list(
            self.context.class_names
        )

    # -- conversation state -----------------------------------------------------------------------------------

    def _state(self, session_id: str) -> PlanState:
        if self.store is None:
            return self._memory.get(session_id, PlanState())
        for message in reversed(self.store.load(session_id)):
            if isinstance(message, AIMessage) and STATE_KEY in message.additional_kwargs:
                return PlanState.model_validate(message.additional_kwargs[STATE_KEY])
        return PlanState()

    def _remember(
        self,
        session_id: str,
        question: str,
        answer: AgentAnswer,
        plan: Plan | None,
        result: dict[str, Any] | None,
        previous: PlanState,
    ) -> None:
        state = previous
        if plan is not None:
            arguments = plan.arguments
            ranked = list((result or {}).get("effects") or {}) or previous.ranked
            state = PlanState(
                operation=plan.operation,
                row=arguments.get("row", previous.row if "text" not in arguments else None),
                text=arguments.get("text", previous.text if "row" not in arguments else None),
                feature=arguments.get("feature", previous.feature),
                ranked=ranked,
                arguments=arguments,
            )
        if self.store is None:
            self._memory[session_id] = state
            return
        messages: list[BaseMessage] = [
            HumanMessage(question),
            AIMessage(answer.text, additional_kwargs={STATE_KEY: state.model_dump(mode="json")}),
        ]
        self.store.append(session_id, messages)


ORDINAL_WORDS = {0: "first", 1: "second", 2: "third", 3: "fourth", 4: "fifth"}
FOLLOW_UP_START = re.compile(r"^\s*(?:and|also|same|now|then|what about|how about|and what about|ok|okay)\b", re.I)


def _elliptical(question: str) -> bool:
    """Whether a question leans on the previous one: short, or opening like a follow-up ('and for row 5?')."""
    return len(question.split()) <= 6 or bool(FOLLOW_UP_START.match(question))


def _likeliest(scores: Scores) -> int:
    """The continuation with the highest log-probability per token (sums favour short continuations)."""
    return int(np.argmax([lp / max(n, 1) for lp, n in zip(scores.logprobs, scores.token_counts)]))


def survives(template: str, rewritten: str, names: list[str], sources: list[Any]) -> bool:
    """Whether a rewording keeps every number of the template (as written), every name the template uses, and
    adds no number that the sources do not back."""
    if not rewritten:
        return False
    if any(number not in numbers_in_text(rewritten) for number in numbers_in_text(template)):
        return False
    lowered = rewritten.lower()
    if any(name.lower() in template.lower() and name.lower() not in lowered for name in names):
        return False
    return not ungrounded_numbers(rewritten, source_numbers([template, *sources]))
