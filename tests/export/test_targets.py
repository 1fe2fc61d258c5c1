"""What each export target writes, checked without Spark: content, determinism, secrets, schemas."""

from __future__ import annotations

import json
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

import jupyter_dataflow as jd
from jupyter_dataflow.core.errors import ConfigError, DataflowError
from jupyter_dataflow.export import K8sOptions, bundle, export_home, k8s, spec, write
from jupyter_dataflow.export.files import MANIFEST
from tests.export.conftest import SECRET, tree

TARGETS = ("bundle", "spark-pipelines", "k8s")


@pytest.mark.parametrize("target", TARGETS)
def test_exporting_twice_gives_byte_identical_files(example, tmp_path: Path, target: str) -> None:
    flow = example(rich=True)
    first = tree(flow.export(tmp_path / "a", to=target))
    again = tree(flow.export(tmp_path / "a", to=target))
    assert first == again
    assert len(first) > 4
    if target != "spark-pipelines":  # no absolute path inside: another folder gives the same bytes
        assert tree(flow.export(tmp_path / "b", to=target)) == first


def test_same_flow_from_another_home_and_order_of_settings_gives_same_bundle(example, tmp_path: Path) -> None:
    one = example(rich=True)
    reordered = dict(reversed(list(one._conf.items())))
    two = example(rich=True, conf=reordered, root=tmp_path / "elsewhere")
    assert tree(one.export(tmp_path / "x", to="bundle")) == tree(two.export(tmp_path / "y", to="bundle"))


@pytest.mark.parametrize("target", TARGETS)
def test_no_credential_is_written_and_each_is_listed(example, tmp_path: Path, target: str) -> None:
    flow = example(rich=True)
    out = flow.export(tmp_path / target, to=target)
    files = tree(out)
    for rel, data in files.items():
        assert SECRET.encode() not in data, f"{rel} contains a credential"
        assert b"AKIA-not-exported" not in data, f"{rel} contains a credential"
    readme = files["README.md"].decode()
    for env in ("SPARK_HADOOP_FS_S3A_SECRET_KEY", "SPARK_HADOOP_FS_S3A_ACCESS_KEY", "DATAFLOW_BIG_OUT_PASSWORD"):
        assert env in readme
    assert "spark.hadoop.fs.s3a.secret.key" in readme


def test_bundle_holds_every_definition_hash_and_code_file(example, tmp_path: Path) -> None:
    flow = example(rich=True)
    out = flow.export(tmp_path / "b", to="bundle")
    doc = json.loads((out / "flow.json").read_text())
    assert doc["format"] == bundle.FORMAT and doc["flow"] == "default"
    names = [s["name"] for s in doc["stages"]]
    assert names == flow.graph.order()
    for entry in doc["stages"]:
        stage = flow.graph[entry["name"]]
        assert entry["definition_hash"] == stage.definition_hash()
        assert entry["kind"] == stage.kind
        if stage.kind == "transform":
            code = (out / entry["definition"]["code_file"]).read_text()
            assert code.rstrip("\n") == stage.text.rstrip("\n")
            assert len(entry["definition"]["canonical_sha256"]) == 64
    conf = doc["engine"]["conf"]
    assert conf["spark.hadoop.fs.s3a.secret.key"] == "${SPARK_HADOOP_FS_S3A_SECRET_KEY}"
    assert conf["spark.sql.shuffle.partitions"] == "2"
    sink = next(s for s in doc["stages"] if s["name"] == "big_out")
    assert dict(sink["definition"]["options"])["password"] == "${DATAFLOW_BIG_OUT_PASSWORD}"
    assert "data/orders" in (out / "README.md").read_text()


def test_a_second_export_removes_files_of_dropped_stages_only(example, tmp_path: Path) -> None:
    flow = example(rich=True)
    out = flow.export(tmp_path / "b", to="bundle")
    (out / "notes.txt").write_text("mine")
    assert (out / "stages" / "scaled_daily.py").exists()
    flow.drop("scaled_daily")
    flow.export(out, to="bundle")
    assert not (out / "stages" / "scaled_daily.py").exists()
    assert (out / "notes.txt").read_text() == "mine"
    assert "stages/scaled_daily.py" not in json.loads((out / MANIFEST).read_text())["files"]


def test_pipeline_project_is_read_by_spark_pipelines_own_loader(example, tmp_path: Path) -> None:
    from pyspark.pipelines.cli import load_pipeline_spec

    flow = example(rich=True)
    out = flow.export(tmp_path / "p", to="spark-pipelines", storage="file:///tmp/pipeline-storage")
    loaded = load_pipeline_spec(out / "spark-pipeline.yml")
    assert loaded.name == "default"
    assert loaded.storage == "file:///tmp/pipeline-storage"
    assert loaded.configuration["spark.sql.session.timeZone"] == "UTC"
    assert loaded.configuration["spark.sql.shuffle.partitions"] == "2"
    assert "spark.hadoop.fs.s3a.secret.key" not in loaded.configuration
    assert [g.include for g in loaded.libraries] == ["transformations/**/*"]
    files = tree(out)
    expected = {f"transformations/{n}.py" for n in ("orders", "customers", "by_segment", "scaled_daily")}
    expected |= {f"transformations/{n}.sql" for n in ("daily", "daily_customers", "daily_out", "big_days", "big_out")}
    assert expected <= set(files)
    for rel, data in files.items():
        if rel.endswith(".py"):
            compile(data, rel, "exec")
    assert "spark.sql.catalogImplementation hive" in files["conf/spark-defaults.conf"].decode()
    assert "spark.executor.memory 1g" in files["conf/spark-defaults.conf"].decode()
    assert (out / "run.sh").stat().st_mode & 0o111


def test_pipeline_sql_applies_expectations_and_names_each_view(example, tmp_path: Path) -> None:
    flow = example(rich=True)
    out = flow.export(tmp_path / "p", to="spark-pipelines")
    daily = (out / "transformations" / "daily.sql").read_text()
    assert "CREATE MATERIALIZED VIEW daily AS" in daily
    assert "assert_true(coalesce((revenue >= 0), true)" in daily
    big = (out / "transformations" / "big_days.sql").read_text()
    assert "WHERE coalesce((revenue < 1000000), true)" in big
    assert "assert_true" not in big
    sink = (out / "transformations" / "big_out.sql").read_text()
    assert "CREATE MATERIALIZED VIEW big_out AS\nSELECT * FROM big_days" in sink
    orders = (out / "transformations" / "orders.py").read_text()
    assert '@dp.materialized_view(name="orders")' in orders
    assert 'os.path.join(DATA_ROOT, "data/orders")' in orders
    scaled = (out / "transformations" / "scaled_daily.py").read_text()
    assert "def scaled(frame, factor):" in scaled and "FACTOR = 3" in scaled
    assert 'scaled_daily(daily=spark.read.table("daily"))' in scaled
    run = (out / "run.sh").read_text()
    assert ': "${SPARK_HADOOP_FS_S3A_SECRET_KEY:?' in run
    assert '--conf "spark.hadoop.fs.s3a.secret.key=${SPARK_HADOOP_FS_S3A_SECRET_KEY}"' in run


def _documents(out: Path) -> list[dict]:
    docs = []
    for path in sorted((out / "k8s").glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def test_every_manifest_is_valid_against_the_kubernetes_schemas(example, tmp_path: Path) -> None:
    flow = example(rich=True)
    out = flow.export(tmp_path / "k", to="k8s")
    docs = _documents(out)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(["ServiceAccount", "Role", "RoleBinding", "ConfigMap", "PersistentVolumeClaim",
                            "Service", "Job", "Service", "CronJob", "Service", "Deployment"])
    version = kubernetes_validate.latest_version()
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_an_invalid_manifest_is_caught_by_the_validator() -> None:
    bad = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "x"},
           "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i", "bogus": 1}]}}}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, kubernetes_validate.latest_version(), strict=True)


def test_driver_pods_run_the_bundle_in_client_mode_reachable_through_their_service(example, tmp_path: Path) -> None:
    flow = example(rich=True)
    out = flow.export(tmp_path / "k", to="k8s", namespace="analytics", image="registry.example/df:1")
    docs = _documents(out)
    by_kind = {d["kind"]: d for d in docs}
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    pods = {"Job": by_kind["Job"]["spec"]["template"],
            "CronJob": by_kind["CronJob"]["spec"]["jobTemplate"]["spec"]["template"],
            "Deployment": by_kind["Deployment"]["spec"]["template"]}
    config = by_kind["ConfigMap"]
    bundle_files = {p for p in tree(out / "bundle") if p != "README.md"}
    assert {k8s.Manifests.config_key(p) for p in bundle_files} == set(config["data"])
    for kind, pod in pods.items():
        container = pod["spec"]["containers"][0]
        argv = container["command"]
        assert argv[:3] == ["jupyter-dataflow", "run", k8s.BUNDLE_MOUNT]
        assert argv[argv.index("--spark") + 1] == "k8s://https://kubernetes.default.svc"
        conf = dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv) if a == "--conf")
        assert conf["spark.kubernetes.namespace"] == "analytics"
        assert conf["spark.kubernetes.container.image"] == "registry.example/df:1"
        assert conf["spark.driver.bindAddress"] == "0.0.0.0"
        host = conf["spark.driver.host"]
        service_name, namespace = host.split(".")[:2]
        assert namespace == "analytics" and host.endswith(".svc.cluster.local")
        service = services[service_name]
        assert service["spec"]["clusterIP"] == "None"
        selector = service["spec"]["selector"]
        assert selector.items() <= pod["metadata"]["labels"].items()
        # the selector picks this workload's driver and no other workload's
        others = [p for k, p in pods.items() if k != kind]
        assert all(not selector.items() <= p["metadata"]["labels"].items() for p in others)
        assert {p["containerPort"] for p in container["ports"]} == {int(conf["spark.driver.port"]),
                                                                    int(conf["spark.driver.blockManager.port"])}
        assert pod["spec"]["serviceAccountName"] == by_kind["RoleBinding"]["subjects"][0]["name"]
        env = {e["name"]: e for e in container["env"]}
        assert env["SPARK_HADOOP_FS_S3A_SECRET_KEY"]["valueFrom"]["secretKeyRef"]["key"] == \
            "SPARK_HADOOP_FS_S3A_SECRET_KEY"
        assert conf["spark.kubernetes.driver.pod.name"] == "$(POD_NAME)" and "POD_NAME" in env
        items = pod["spec"]["volumes"][0]["configMap"]["items"]
        assert {i["path"] for i in items} == bundle_files
    assert "--watch" in pods["Deployment"]["spec"]["containers"][0]["command"]
    rules = by_kind["Role"]["rules"][0]
    assert {"pods", "services", "configmaps"} <= set(rules["resources"]) and "create" in rules["verbs"]
    dockerfile = (out / "Dockerfile").read_text()
    assert "FROM ${SPARK_IMAGE}" in dockerfile and "python3" in dockerfile.split("ARG SPARK_IMAGE=")[1].splitlines()[0]
    assert "pip install" in dockerfile


def test_container_memory_leaves_room_for_the_jvm() -> None:
    assert k8s.container_memory("1g") == "1434Mi"
    assert k8s.container_memory("512m") == "717Mi"
    with pytest.raises(ValueError):
        k8s.container_memory("lots")


def test_export_from_a_home_directory_and_its_errors(example, tmp_path: Path) -> None:
    flow = example()
    out = export_home(flow.home, tmp_path / "b", "bundle")
    assert json.loads((out / "flow.json").read_text())["flow"] == "default"
    with pytest.raises(ConfigError, match="no flow 'nope'"):
        export_home(flow.home, tmp_path / "c", "bundle", name="nope")
    with pytest.raises(ConfigError, match="not a jupyter-dataflow home"):
        export_home(tmp_path / "missing", tmp_path / "c", "bundle")
    with pytest.raises(ConfigError, match="unknown export target"):
        flow.export(tmp_path / "d", to="zip")
    with pytest.raises(ConfigError, match="unknown export option"):
        flow.export(tmp_path / "d", to="bundle", colour="blue")


def test_an_empty_flow_is_refused(tmp_path: Path) -> None:
    with jd.Flow.open(home=tmp_path / ".dataflow") as flow, pytest.raises(DataflowError, match="no stages"):
        flow.export(tmp_path / "out", to="bundle")


def test_k8s_options_reach_the_manifests(example, tmp_path: Path) -> None:
    flow = example()
    s = spec.build(flow.graph, flow.name)
    out = write(s, tmp_path / "k", "k8s", k8s_options=K8sOptions(schedule="*/5 * * * *", storage_class="nfs"))
    docs = _documents(out)
    cron = next(d for d in docs if d["kind"] == "CronJob")
    claim = next(d for d in docs if d["kind"] == "PersistentVolumeClaim")
    assert cron["spec"]["schedule"] == "*/5 * * * *"
    assert claim["spec"]["storageClassName"] == "nfs" and claim["spec"]["accessModes"] == ["ReadWriteMany"]
