"""``drillbook fleet render k8s|github|gitlab``: the fleet's shards on engines teams already run.

One module per engine (:mod:`.k8s`, :mod:`.github`, :mod:`.gitlab`) turns checked
:class:`~.settings.RenderSettings` into file texts; :mod:`.lint` (with :mod:`.lint_ci`) holds
drillbook's own rules for what the schemas miss; :mod:`.command` is the command line, which lints
what it renders and refuses (exit 2) to write anything that breaks a rule.
"""

from __future__ import annotations

from . import github, gitlab, k8s
from .lint import Finding, LintContext, lint
from .settings import ENGINES, RenderSettings

__all__ = ["ENGINES", "Finding", "LintContext", "RenderSettings", "lint", "render_files"]


def render_files(settings: RenderSettings, *, job_image: str | None = None) -> dict[str, str]:
    """File name -> text for ``settings.engine``; the same settings give the same bytes.

    ``job_image`` is the CI job image (GitHub container, GitLab ``image:``); Kubernetes uses
    ``settings.image``, the shard image itself.
    """
    if settings.engine == "k8s":
        return k8s.render(settings)
    if settings.engine == "github":
        return github.render(settings, job_image=job_image)
    return gitlab.render(settings, job_image=job_image)
