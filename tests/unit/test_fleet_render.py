"""``drillbook fleet render``: what it writes for each engine, what it refuses, and its command line.

The rendered files are checked three ways: the engines' schemas (test_fleet_render_schemas.py),
drillbook's own lint rules (test_fleet_render_lint.py), and here the facts the issue names:
completions = bins, the failure policy, fail-fast false, merge if always(), the shard index,
secrets by name only, and byte-identical output for identical input.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checks.errors import ConfigError
from drillbook.cli import main
from drillbook.fleet.render import LintContext, lint, render_files
from drillbook.fleet.render.settings import MAX_BINS, RenderSettings, secret_names_in, settings_from
from drillbook.fleet.render.yamltext import load
from tests.support.cli import drillbook


def make(engine: str = "k8s", **over: Any) -> RenderSettings:
    """Checked settings with the values a team would pass; ``over`` replaces any of them."""
    values: dict[str, Any] = {
        "engine": engine,
        "bins": 6,
        "parallel": 3,
        "image": None,
        "schedule": None,
        "runs": "s3://drills/runs" if engine == "k8s" else None,
        "config": Path("drillbook.toml"),
        "secret": None,
        "name": None,
        "cadence": None,
        "secret_names": ("ORDERS_DSN",),
    }
    values.update(over)
    return settings_from(**values)


def only(files: dict[str, str], name: str) -> dict[str, Any]:
    [document] = load(files[name])
    assert isinstance(document, dict)
    return document


class TestKubernetes:
    def test_indexed_job_as_the_design_says(self) -> None:
        """completionMode Indexed, completions = bins, parallelism, one retry per index, no index stops
        the others, FailIndex on exit 2 and Ignore on disruptions, restartPolicy Never."""
        cron = only(render_files(make(bins=6, parallel=3)), "cronjob.yaml")
        assert cron["kind"] == "CronJob"
        job = cron["spec"]["jobTemplate"]["spec"]
        assert (job["completionMode"], job["completions"], job["parallelism"]) == ("Indexed", 6, 3)
        assert (job["backoffLimitPerIndex"], job["maxFailedIndexes"]) == (1, 6)
        rules = job["podFailurePolicy"]["rules"]
        assert {
            "action": "FailIndex",
            "onExitCodes": {"containerName": "drill", "operator": "In", "values": [2]},
        } in rules
        assert {
            "action": "Ignore",
            "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
        } in rules
        assert job["template"]["spec"]["restartPolicy"] == "Never"

    def test_the_plan_packs_into_exactly_the_completions(self) -> None:
        """The init container plans --bins = completions into the group of the Job's UID; the shard reads
        that plan; both take the config the jobs pass on."""
        job = only(render_files(make(bins=11, parallel=4, cadence="monthly")), "job.yaml")
        pod = job["spec"]["template"]["spec"]
        [planner] = pod["initContainers"]
        [drill] = pod["containers"]
        assert planner["args"] == [
            "plan",
            "--config",
            "drillbook.toml",
            "--cadence",
            "monthly",
            "--bins",
            "11",
            "--out",
            "s3://drills/runs/$(GROUP)/",
        ]
        assert drill["args"][:5] == [
            "run",
            "--config",
            "drillbook.toml",
            "--plan",
            "s3://drills/runs/$(GROUP)/plan.json",
        ]
        assert {
            "name": "GROUP",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['batch.kubernetes.io/controller-uid']"}},
        } in drill["env"]
        # the attempt directory is the pod's: a retried pod never overwrites an earlier attempt
        assert {
            "name": "DRILLBOOK_ATTEMPT",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}},
        } in drill["env"]

    def test_read_only_non_root_no_service_account(self) -> None:
        """Read-only root, non-root, no token mounted; /scratch and /tmp are emptyDir volumes."""
        pod = only(render_files(make()), "cronjob.yaml")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False and "serviceAccountName" not in pod
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert {v["name"] for v in pod["volumes"] if "emptyDir" in v} == {"scratch", "tmp"}
        for container in pod["initContainers"] + pod["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert {m["mountPath"] for m in container["volumeMounts"]} == {"/scratch", "/tmp"}

    def test_secrets_by_reference_only(self) -> None:
        """The Secret comes in through envFrom; its keys are named in the header, no value anywhere."""
        files = render_files(make(secret="orders-drills", secret_names=("ORDERS_DSN", "S3_KEY")))
        text = files["cronjob.yaml"]
        assert "The Secret 'orders-drills' must hold: ORDERS_DSN, S3_KEY" in text
        pod = only(files, "cronjob.yaml")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        for container in pod["initContainers"] + pod["containers"]:
            assert container["envFrom"] == [{"secretRef": {"name": "orders-drills"}}]
            assert not {e["name"] for e in container["env"]} & {"ORDERS_DSN", "S3_KEY"}

    def test_pods_need_an_s3_runs_location(self) -> None:
        """Pods share no directory: k8s without --runs s3://… is refused, naming the option."""
        with pytest.raises(ConfigError, match=r"--runs 'runs': Kubernetes pods share no directory") as raised:
            make(runs=None)
        assert "s3://" in raised.value.hint


class TestGitHub:
    def test_plan_matrix_merge(self) -> None:
        """plan outputs the indexes; the shard matrix reads them with fail-fast false and max-parallel;
        the merge needs the shards and runs if: always()."""
        jobs = only(render_files(make("github", bins=5, parallel=2)), "drillbook-fleet.yml")["jobs"]
        assert jobs["plan"]["outputs"] == {"indexes": "${{ steps.plan.outputs.indexes }}"}
        assert "--bins 5" in jobs["plan"]["steps"][-2]["run"]
        strategy = jobs["shard"]["strategy"]
        assert strategy == {
            "fail-fast": False,
            "max-parallel": 2,
            "matrix": {"index": "${{ fromJSON(needs.plan.outputs.indexes) }}"},
        }
        assert jobs["merge"]["needs"] == ["plan", "shard"] and "always()" in jobs["merge"]["if"]

    def test_shard_index_and_secrets_reach_the_shell_through_env(self) -> None:
        """matrix.index and each secret are env values of the step, never spliced into its run line."""
        jobs = only(render_files(make("github", secret_names=("ORDERS_DSN",))), "drillbook-fleet.yml")["jobs"]
        [step] = [s for s in jobs["shard"]["steps"] if "--plan" in s.get("run", "")]
        assert step["env"] == {
            "DRILLBOOK_SHARD_INDEX": "${{ matrix.index }}",
            "DRILLBOOK_ATTEMPT": "${{ github.run_attempt }}",
            "ORDERS_DSN": "${{ secrets.ORDERS_DSN }}",
        }
        assert "${{" not in step["run"] and '--shard-index "$DRILLBOOK_SHARD_INDEX"' in step["run"]

    def test_without_s3_the_runs_travel_as_uniquely_named_artifacts(self) -> None:
        """plan, one per shard index, and the report: each artifact name once."""
        jobs = only(render_files(make("github")), "drillbook-fleet.yml")["jobs"]
        names = [
            s["with"]["name"]
            for job in jobs.values()
            for s in job["steps"]
            if s.get("uses", "").startswith("actions/upload-artifact")
        ]
        assert names == ["drillbook-plan", "drillbook-shard-${{ matrix.index }}", "drillbook-report"]

    def test_with_s3_no_artifacts(self) -> None:
        jobs = only(render_files(make("github", runs="s3://drills/runs")), "drillbook-fleet.yml")["jobs"]
        assert not [s for job in jobs.values() for s in job["steps"] if "artifact" in s.get("uses", "")]


class TestGitLab:
    def test_parallel_pipeline(self) -> None:
        """parallel = bins, --shard-index $((CI_NODE_INDEX-1)), the merge when: always after the shards."""
        pipeline = only(render_files(make("gitlab", bins=7)), ".gitlab-ci.yml")
        shard = pipeline["drillbook-shard"]
        assert shard["parallel"] == 7
        assert shard["script"][0].endswith("--shard-index $((CI_NODE_INDEX-1))")
        assert pipeline["drillbook-merge"]["when"] == "always"
        assert "drillbook-shard" in [n["job"] for n in pipeline["drillbook-merge"]["needs"]]
        assert "script_failure" not in shard["retry"]["when"]

    def test_schedule_and_secrets_named_in_the_header(self) -> None:
        text = render_files(make("gitlab", schedule="30 1 * * 1", secret_names=("A_DSN",)))[".gitlab-ci.yml"]
        assert "# Pipeline schedule (CI/CD > Schedules, UTC): 30 1 * * 1\n" in text
        assert "# Masked CI/CD variables needed: A_DSN.\n" in text


class TestSettings:
    @pytest.mark.parametrize(
        ("over", "message"),
        [
            ({"bins": 0}, r"--bins 0: k8s takes 1 to 256"),
            ({"bins": 257}, r"--bins 257"),
            ({"parallel": 7}, r"--parallel 7: expected 1 to --bins \(6\)"),
            ({"image": "Not An Image"}, r"--image 'Not An Image'"),
            ({"schedule": "@monthly"}, r"--schedule '@monthly'"),
            ({"schedule": "0 0 2 1 * *"}, r"five fields expected"),
            ({"runs": "s3://drills/$(rm -rf)"}, r"--runs"),
            ({"runs": "s3://drills/runs\nx: 1"}, r"--runs"),
            ({"name": "Drills"}, r"--name 'Drills'"),
            ({"cadence": "${{ github.token }}"}, r"--cadence"),
        ],
    )
    def test_each_bad_value_is_refused_naming_its_option(self, over: dict[str, Any], message: str) -> None:
        with pytest.raises(ConfigError, match=message):
            make(**over)

    def test_gitlab_holds_200(self) -> None:
        with pytest.raises(ConfigError, match=r"--bins 201: gitlab takes 1 to 200"):
            make("gitlab", bins=201)

    def test_secret_names_from_the_config_and_fleet_toml(self, tmp_path: Path) -> None:
        """Only the ${VAR} names, sorted and once; the values are never read."""
        (tmp_path / "drillbook.toml").write_text(
            '[targets.production]\ndsn = "${PROD_DSN}"\nx = "${B}${PROD_DSN}"\n'
        )
        (tmp_path / "fleet.toml").write_text('[[members]]\nbucket = "${A_KEY}"\n')
        assert secret_names_in(tmp_path / "drillbook.toml") == ("A_KEY", "B", "PROD_DSN")


ENGINE_BINS = st.sampled_from(sorted(MAX_BINS)).flatmap(
    lambda engine: st.tuples(st.just(engine), st.integers(1, MAX_BINS[engine]))
)


class TestProperties:
    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(engine_bins=ENGINE_BINS, data=st.data())
    def test_every_render_is_lint_clean_and_deterministic(
        self, engine_bins: tuple[str, int], data: st.DataObject
    ) -> None:
        """Any valid bins/parallel/cadence renders files that pass every lint rule, give the engine
        exactly ``bins`` shards, and come out byte-identical when rendered again."""
        engine, bins = engine_bins
        parallel = data.draw(st.integers(1, bins))
        cadence = data.draw(st.sampled_from([None, "monthly", "quarterly"]))
        names = tuple(
            sorted(
                set(
                    data.draw(
                        st.lists(st.from_regex(r"[A-Z][A-Z0-9_]{0,8}_(DSN|KEY)", fullmatch=True), max_size=3)
                    )
                )
            )
        )
        chosen = make(engine, bins=bins, parallel=parallel, cadence=cadence, secret_names=names)
        files = render_files(chosen)
        assert files == render_files(chosen)
        assert lint(engine, files, LintContext(bins=bins, secret_names=names)) == []
        shards: Callable[[Any], int] = {
            "k8s": lambda d: d["spec"]["jobTemplate"]["spec"]["completions"],
            "github": lambda d: int(d["jobs"]["plan"]["steps"][2]["run"].split("--bins ")[1].split()[0]),
            "gitlab": lambda d: d["drillbook-shard"]["parallel"],
        }[engine]
        assert shards(load(sorted(files.items())[0][1])[0]) == bins

    @settings(max_examples=200, deadline=None)
    @given(text=st.text(max_size=40))
    def test_outside_text_is_refused_or_stays_one_scalar(self, text: str) -> None:
        """Any text as --image, --runs or --cadence: refused with ConfigError, or rendered as exactly
        that one value (it never adds a key, a document or a shell word)."""
        for option in ("image", "runs", "cadence"):
            try:
                chosen = make("gitlab", **{option: text})
            except ConfigError:
                continue
            pipeline = only(render_files(chosen, job_image=chosen.image), ".gitlab-ci.yml")
            assert set(pipeline) >= {"drillbook-plan", "drillbook-shard", "drillbook-merge"}
            if option == "image":
                assert pipeline["default"]["image"] == text
            elif option == "runs":
                assert pipeline["variables"]["DRILLBOOK_RUNS"] == text.rstrip("/")
            else:
                assert pipeline["variables"]["DRILLBOOK_CADENCE"] == text
            assert all(ch not in text for ch in "\"'$`;|&<> \n\\")


class TestCommand:
    def test_writes_the_files_and_says_where(self, tmp_path: Path) -> None:
        result = drillbook(
            "fleet",
            "render",
            "k8s",
            "--out",
            str(tmp_path / "k8s"),
            "--bins",
            "4",
            "--runs",
            "s3://drills/runs",
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == [
            str(tmp_path / "k8s" / "cronjob.yaml"),
            str(tmp_path / "k8s" / "job.yaml"),
        ]
        assert "bins=4 parallel=4" in result.stderr
        assert only({"f": (tmp_path / "k8s" / "job.yaml").read_text()}, "f")["spec"]["completions"] == 4

    # The remaining cases call the same entry point in-process (a subprocess costs seconds here).

    def test_bad_option_exits_2_naming_it(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["fleet", "render", "github", "--out", str(tmp_path), "--bins", "300"]) == 2
        assert "--bins 300: github takes 1 to 256" in capsys.readouterr().err
        assert not list(tmp_path.iterdir())

    def test_output_that_breaks_a_rule_is_refused_and_not_written(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A config whose ${VAR} is a name the workflow sets itself (DRILLBOOK_CONFIG): the secret
        would be set literally; lint says so with the field, exit 2, nothing written."""
        config = tmp_path / "drillbook.toml"
        config.write_text('[targets.production]\ndsn = "${DRILLBOOK_CONFIG}"\n')
        out = tmp_path / "out"
        assert (
            main(["fleet", "render", "github", "--out", str(out), "--bins", "3", "--config", str(config)])
            == 2
        )
        err = capsys.readouterr().err
        assert "GHA-SECRETS env.DRILLBOOK_CONFIG: set literally" in err
        assert "nothing written" in err
        assert not out.exists()

    def test_without_bins_one_per_inventory_member(self, tmp_path: Path) -> None:
        """No --bins: the inventory's member count (three names of a pattern) is the bin count."""
        config = tmp_path / "drillbook.toml"
        config.write_text(
            '[fleet]\n[[fleet.pattern]]\nnames = ["db-001", "db-002", "db-003"]\n'
            '[fleet.pattern.targets.production]\nkind = "postgres"\ndsn = "${TENANTS_DSN}/{member}"\n'
        )
        assert (
            main(["fleet", "render", "gitlab", "--out", str(tmp_path / "out"), "--config", str(config)]) == 0
        )
        pipeline = only({"f": (tmp_path / "out" / ".gitlab-ci.yml").read_text()}, "f")
        assert pipeline["drillbook-shard"]["parallel"] == 3
        assert (
            "# Masked CI/CD variables needed: TENANTS_DSN."
            in (tmp_path / "out" / ".gitlab-ci.yml").read_text()
        )

    def test_missing_config_given_explicitly(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert (
            main(
                [
                    "fleet",
                    "render",
                    "gitlab",
                    "--out",
                    str(tmp_path),
                    "--bins",
                    "2",
                    "--config",
                    str(tmp_path / "nope.toml"),
                ]
            )
            == 2
        )
        assert "nope.toml: no such file" in capsys.readouterr().err
