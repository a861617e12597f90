"""Which groups a Controller call means: a group or tensor by name, the groups below a depth.

The Controller's calls name what they change (:meth:`~multilr.Controller.set_scale`,
``freeze``, ``unfreeze`` by group or tensor name; ``freeze_to`` by depth); these pure
functions of the plan turn that into group positions, or refuse a name that is unknown
or a tensor or depth that does not have groups of its own. Apart from
:mod:`multilr._control` because they read only the plan, never the optimizer.
"""

from __future__ import annotations

from multilr._plantypes import Plan
from multilr.errors import MultiLRError, SpecError

__all__ = ["frozen_below", "group_index"]


def group_index(plan: Plan, groups: list[str], group: str) -> int:
    """A group by its name, or by the name of a tensor that has a group to itself.

    Args:
        plan: The Controller's plan.
        groups: Its groups' names, in order.
        group: The name to look up.

    Raises:
        SpecError: Unknown name.
        MultiLRError: A parameter that shares its group with other tensors.
    """
    if group in groups:
        return groups.index(group)
    canonical = plan.aliases.get(group, group)
    for i, g in enumerate(plan.groups):
        if canonical in g.params:
            if len(g.params) == 1:
                return i
            raise MultiLRError(
                f"parameter {group!r} shares group {g.name!r} with {len(g.params) - 1} other tensor(s), "
                "so its rate cannot change alone; give it a group of its own in the spec (a `rates` "
                "entry or a rule that selects only it), or change the whole group"
            )
    from multilr._check import did_you_mean

    # group names join the labels of the rules that decided them ("stem/frozen"): a rule's
    # name alone is the likeliest slip
    labelled = [g for g in groups if group in g.split("/")]
    hint = f" (did you mean {labelled[0]!r}?)" if len(labelled) == 1 else ""
    raise SpecError(
        f"unknown group or parameter {group!r}{hint or did_you_mean(group, groups)}; groups: {groups}"
    ) from None


def frozen_below(plan: Plan, n: int) -> list[bool]:
    """Per group of ``plan``: whether ``freeze_to(n)`` freezes it (below depth ``n``).

    A ``train_bn`` group (norm tensors the spec keeps training) is never frozen here, at
    any depth, as fastai's ``freeze_to`` leaves norm layers training.

    Raises:
        MultiLRError: A group holds tensors on both sides of ``n``.
    """
    depths = plan.block_depths()
    top = max(depths.values())
    cut = n + top + 1 if n < 0 else n
    frozen = []
    for g in plan.groups:
        if g.train_bn:
            frozen.append(False)
            continue
        ds = {depths[p] for p in g.params}
        if min(ds) < cut <= max(ds):
            raise MultiLRError(
                f"freeze_to({n}): group {g.name!r} holds depths {min(ds)}..{max(ds)}, on both sides of "
                f"depth {cut}; "
                "declare layer decay (or stages) in the spec so that each depth has its own groups"
            )
        frozen.append(max(ds) < cut)
    return frozen
