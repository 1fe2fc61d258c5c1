"""The `k8s` target: a bundle plus what runs it on Kubernetes.

`jupyter-dataflow run` runs in a pod as the Spark driver in client mode against
`k8s://https://kubernetes.default.svc`; executors are pods it creates with the same
image. The manifests: a ServiceAccount, Role and RoleBinding that let the driver
manage executor pods; a ConfigMap holding the bundle; a ReadWriteMany volume claim for
the home (metadata and store, shared with the executors); and, as three alternatives,
a Job (run once), a CronJob (on a schedule) and a Deployment (`--watch`), each with
the headless Service that gives its driver a stable DNS name. A Dockerfile builds the
image from the official Spark Python image. This module only renders data; it never
talks to a cluster.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from jupyter_dataflow.export import bundle
from jupyter_dataflow.export.bundle import secrets_section
from jupyter_dataflow.export.files import dump_yaml_all
from jupyter_dataflow.export.spec import FlowSpec

K8S_MASTER = "k8s://https://kubernetes.default.svc"
BUNDLE_MOUNT = "/opt/dataflow/bundle"
DATA_MOUNT = "/data"
HOME = f"{DATA_MOUNT}/.dataflow"
DRIVER_PORT = 7078
BLOCK_MANAGER_PORT = 7079
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
WORKLOADS = ("run", "schedule", "watch")


@dataclass(frozen=True)
class K8sOptions:
    """Choices for the generated manifests (all have working defaults)."""

    namespace: str = "default"
    image: str | None = None              # default: jupyter-dataflow-<flow>:latest
    schedule: str = "0 * * * *"
    watch_interval: float = 60.0
    executors: int = 2
    executor_cores: int = 1
    executor_memory: str = "2g"
    driver_memory: str = "1g"
    storage_size: str = "20Gi"
    storage_class: str | None = None
    spark_image: str | None = None        # base image; default: spark:<pyspark version>-python3
    package: str | None = None            # what the Dockerfile pip-installs


def container_memory(spark_size: str) -> str:
    """A pod memory request for a JVM of `spark_size` (e.g. "1g"), with 40% for overhead."""
    match = re.fullmatch(r"(\d+)([kmgt]?)b?", spark_size.strip().lower())
    if match is None:
        raise ValueError(f"not a Spark memory size: {spark_size!r}")
    scale = {"": 1 / (1 << 20), "k": 1 / 1024, "m": 1, "g": 1024, "t": 1 << 20}[match.group(2)]
    mebibytes = int(match.group(1)) * scale
    return f"{max(int(mebibytes * 1.4 + 0.999), 256)}Mi"


def slug(name: str, limit: int = 40) -> str:
    """A DNS-1123 label made from a flow name."""
    s = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:limit].strip("-")
    return s or "flow"


def _versions() -> tuple[str, str]:
    import pyspark

    from jupyter_dataflow import __version__

    return pyspark.__version__, __version__


class Manifests:
    """Builds every Kubernetes object of one flow's deployment."""

    def __init__(self, spec: FlowSpec, options: K8sOptions) -> None:
        self.spec = spec
        self.o = options
        self.base = f"dataflow-{slug(spec.name)}"
        self.image = options.image or f"jupyter-dataflow-{slug(spec.name)}:latest"
        self.secret_name = f"{self.base}-credentials"

    def labels(self, component: str | None = None) -> dict[str, str]:
        out = {"app.kubernetes.io/name": "jupyter-dataflow", "app.kubernetes.io/instance": self.base}
        if component:
            out["app.kubernetes.io/component"] = component
        return out

    def meta(self, name: str, component: str | None = None) -> dict[str, Any]:
        return {"name": name, "namespace": self.o.namespace, "labels": self.labels(component)}

    # shared objects --------------------------------------------------------------------
    def service_account(self) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": self.meta(self.base)}

    def role(self) -> dict[str, Any]:
        # The driver creates, watches and deletes executor pods, and the config maps and
        # services Spark makes for them (Spark on Kubernetes, "RBAC").
        return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": self.meta(self.base),
                "rules": [{"apiGroups": [""],
                           "resources": ["pods", "services", "configmaps", "persistentvolumeclaims"],
                           "verbs": ["create", "get", "list", "watch", "update", "patch", "delete",
                                     "deletecollection"]}]}

    def role_binding(self) -> dict[str, Any]:
        return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": self.meta(self.base),
                "subjects": [{"kind": "ServiceAccount", "name": self.base, "namespace": self.o.namespace}],
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": self.base}}

    def bundle_files(self) -> dict[str, str]:
        return bundle.files(self.spec)

    @staticmethod
    def config_key(path: str) -> str:
        """A ConfigMap key for a bundle path (`stages/daily.sql` -> `stages.daily.sql`)."""
        return path.replace("/", ".")

    def config_map(self) -> dict[str, Any]:
        data = {self.config_key(p): t for p, t in sorted(self.bundle_files().items()) if p != "README.md"}
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": self.meta(f"{self.base}-bundle"),
                "data": data}

    def volume_claim(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"accessModes": ["ReadWriteMany"],
                                "resources": {"requests": {"storage": self.o.storage_size}}}
        if self.o.storage_class:
            spec["storageClassName"] = self.o.storage_class
        return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": self.meta(f"{self.base}-data"),
                "spec": spec}

    def base_objects(self) -> list[dict[str, Any]]:
        return [self.service_account(), self.role(), self.role_binding(), self.config_map(), self.volume_claim()]

    # the driver ------------------------------------------------------------------------
    def service_name(self, component: str) -> str:
        return f"{self.base}-{component}"

    def service(self, component: str) -> dict[str, Any]:
        """Headless Service: executors reach the driver at `<name>.<namespace>.svc.cluster.local`."""
        return {"apiVersion": "v1", "kind": "Service", "metadata": self.meta(self.service_name(component), component),
                "spec": {"clusterIP": "None", "publishNotReadyAddresses": True,
                         "selector": self.labels(component),
                         "ports": [{"name": "driver", "port": DRIVER_PORT, "targetPort": DRIVER_PORT},
                                   {"name": "block-manager", "port": BLOCK_MANAGER_PORT,
                                    "targetPort": BLOCK_MANAGER_PORT}]}}

    def spark_conf(self, component: str) -> list[tuple[str, str]]:
        claim = f"{self.base}-data"
        volume = "spark.kubernetes.executor.volumes.persistentVolumeClaim.dataflow-data"
        return [
            ("spark.kubernetes.namespace", self.o.namespace),
            ("spark.kubernetes.container.image", self.image),
            ("spark.kubernetes.authenticate.caCertFile", f"{SA_DIR}/ca.crt"),
            ("spark.kubernetes.authenticate.oauthTokenFile", f"{SA_DIR}/token"),
            ("spark.kubernetes.driver.pod.name", "$(POD_NAME)"),
            ("spark.driver.host", f"{self.service_name(component)}.{self.o.namespace}.svc.cluster.local"),
            ("spark.driver.bindAddress", "0.0.0.0"),
            ("spark.driver.port", str(DRIVER_PORT)),
            ("spark.driver.blockManager.port", str(BLOCK_MANAGER_PORT)),
            ("spark.driver.memory", self.o.driver_memory),
            ("spark.executor.instances", str(self.o.executors)),
            ("spark.executor.cores", str(self.o.executor_cores)),
            ("spark.executor.memory", self.o.executor_memory),
            (f"{volume}.options.claimName", claim),
            (f"{volume}.mount.path", DATA_MOUNT),
            (f"{volume}.mount.readOnly", "false"),
        ]

    def command(self, component: str) -> list[str]:
        argv = ["jupyter-dataflow", "run", BUNDLE_MOUNT, "--home", HOME, "--spark", K8S_MASTER]
        if self.spec.store:
            argv += ["--store", self.spec.store]
        for key, value in self.spark_conf(component):
            argv += ["--conf", f"{key}={value}"]
        if component == "watch":
            argv += ["--watch", "--interval", f"{self.o.watch_interval:g}"]
        return argv

    def env(self) -> list[dict[str, Any]]:
        env: list[dict[str, Any]] = [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "PYSPARK_PYTHON", "value": "python3"},
        ]
        for ref in self.spec.secrets:
            env.append({"name": ref.env, "valueFrom": {"secretKeyRef": {"name": self.secret_name, "key": ref.env}}})
        return env

    def pod_spec(self, component: str) -> dict[str, Any]:
        items = [{"key": self.config_key(p), "path": p} for p in sorted(self.bundle_files()) if p != "README.md"]
        return {
            "serviceAccountName": self.base,
            "restartPolicy": "Always" if component == "watch" else "Never",
            "containers": [{
                "name": "driver",
                "image": self.image,
                "imagePullPolicy": "IfNotPresent",
                "command": self.command(component),
                "env": self.env(),
                "ports": [{"name": "driver", "containerPort": DRIVER_PORT},
                          {"name": "block-manager", "containerPort": BLOCK_MANAGER_PORT}],
                "resources": {"requests": {"cpu": "1", "memory": container_memory(self.o.driver_memory)}},
                "volumeMounts": [{"name": "bundle", "mountPath": BUNDLE_MOUNT, "readOnly": True},
                                 {"name": "dataflow-data", "mountPath": DATA_MOUNT}],
            }],
            "volumes": [{"name": "bundle", "configMap": {"name": f"{self.base}-bundle", "items": items}},
                        {"name": "dataflow-data", "persistentVolumeClaim": {"claimName": f"{self.base}-data"}}],
        }

    def pod_template(self, component: str) -> dict[str, Any]:
        return {"metadata": {"labels": self.labels(component)}, "spec": self.pod_spec(component)}

    def job(self) -> dict[str, Any]:
        return {"apiVersion": "batch/v1", "kind": "Job", "metadata": self.meta(f"{self.base}-run", "run"),
                "spec": {"backoffLimit": 1, "ttlSecondsAfterFinished": 86400,
                         "template": self.pod_template("run")}}

    def cron_job(self) -> dict[str, Any]:
        return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": self.meta(f"{self.base}-schedule", "schedule"),
                "spec": {"schedule": self.o.schedule, "concurrencyPolicy": "Forbid",
                         "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 3,
                         "jobTemplate": {"metadata": {"labels": self.labels("schedule")},
                                         "spec": {"backoffLimit": 1,
                                                  "template": self.pod_template("schedule")}}}}

    def deployment(self) -> dict[str, Any]:
        return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": self.meta(f"{self.base}-watch", "watch"),
                "spec": {"replicas": 1, "strategy": {"type": "Recreate"},
                         "selector": {"matchLabels": self.labels("watch")},
                         "template": self.pod_template("watch")}}

    def workload(self, component: str) -> list[dict[str, Any]]:
        make = {"run": self.job, "schedule": self.cron_job, "watch": self.deployment}[component]
        return [self.service(component), make()]


def dockerfile(spec: FlowSpec, options: K8sOptions) -> str:
    spark_version, version = _versions()
    base = options.spark_image or f"spark:{spark_version}-python3"
    package = options.package or f"jupyter-dataflow=={version}"
    return "\n".join([
        f"# Driver and executor image for jupyter-dataflow flow {spec.name!r}.",
        "# Build from this folder:  docker build -t IMAGE .   (IMAGE as in the manifests)",
        "# The official Spark Python image brings Java, Spark (SPARK_HOME=/opt/spark) and Python;",
        "# pyspark is pinned to the same Spark version so driver and executors agree.",
        f"ARG SPARK_IMAGE={base}",
        "FROM ${SPARK_IMAGE}",
        "USER root",
        f'ARG DATAFLOW_PACKAGE="{package}"',
        "ENV PIP_NO_CACHE_DIR=1 PIP_BREAK_SYSTEM_PACKAGES=1 PYSPARK_PYTHON=python3 PYSPARK_DRIVER_PYTHON=python3",
        f'RUN python3 -m pip install "${{DATAFLOW_PACKAGE}}" "pyspark[connect]=={spark_version}"',
        "WORKDIR /opt/dataflow",
        "USER 185",
    ]) + "\n"


def readme(spec: FlowSpec, m: Manifests) -> str:
    ns = m.o.namespace
    lines = [
        f"# Flow `{spec.name}` on Kubernetes",
        "",
        "Exported by `jupyter-dataflow export --to k8s`: the flow as a bundle (`bundle/`, see its",
        "README), a `Dockerfile`, and manifests in `k8s/`. The driver is `jupyter-dataflow run` in a",
        f"pod, in Spark client mode against `{K8S_MASTER}`; it creates executor pods with",
        "the same image. Every manifest validates against the Kubernetes schemas.",
        "",
        "```bash",
        f"docker build -t {m.image} . && docker push {m.image}   # or load it into your cluster",
    ]
    if spec.secrets:
        lines.append(f"kubectl -n {ns} create secret generic {m.secret_name} "
                     + " ".join(f"--from-literal={r.env}=..." for r in spec.secrets))
    lines += [
        "kubectl apply -f k8s/base.yaml       # ServiceAccount, Role, RoleBinding, bundle ConfigMap, volume",
        "kubectl apply -f k8s/run-once.yaml   # a Job that reconciles once",
        "# or: kubectl apply -f k8s/schedule.yaml   (a CronJob, schedule "
        f"`{m.o.schedule}`)",
        "# or: kubectl apply -f k8s/watch.yaml      (a Deployment that keeps reconciling)",
        "```",
        "",
        "Use one of the three workloads at a time: they share one home, and the home has one",
        "writer. Each comes with its own headless Service, so `spark.driver.host` (the Service's",
        "DNS name) always points at that workload's driver pod. To run the Job again, delete it",
        f"first (`kubectl -n {ns} delete job {m.base}-run`).",
        "",
        "## Storage",
        "",
        f"The home (`{HOME}`: the metadata database) lives on the ReadWriteMany volume claim",
        f"`{m.base}-data`, mounted at `{DATA_MOUNT}` in the driver and in every executor",
        "(`spark.kubernetes.executor.volumes.*`). Relative source and sink paths resolve against",
        f"`{DATA_MOUNT}`: copy the input data there (for example with a pod that mounts the claim).",
        "Any shared filesystem that Spark reads as a local path works (NFS, CephFS, EFS, Filestore).",
        "The metadata database is SQLite: keep one driver at a time.",
        "",
        *_store_lines(spec),
        "",
        "## Updating",
        "",
        f"Export again and `kubectl apply -f k8s/base.yaml`: the ConfigMap `{m.base}-bundle` holds the",
        "bundle, so a code change needs no new image. The next run recomputes only what changed.",
        "",
        "## Spark settings",
        "",
        f"Namespace `{ns}`, image `{m.image}`, {m.o.executors} executors of {m.o.executor_cores} core and "
        f"{m.o.executor_memory}, driver {m.o.driver_memory}. The flow's own settings are in",
        "`bundle/flow.json`; the Kubernetes ones are on each workload's command line.",
        "",
        *secrets_section(spec),
    ]
    if spec.secrets:
        lines += ["", f"The workloads read them from the Secret `{m.secret_name}` (created above), one key per variable."]
    return "\n".join(lines) + "\n"


def _store_lines(spec: FlowSpec) -> list[str]:
    """README lines on where executors write the stage outputs."""
    if spec.store:
        return [f"Executors write stage outputs straight into the data store root `{spec.store}`",
                "(the `--store` argument of every workload). The image needs the filesystem's",
                "Hadoop connector, and the credentials go in the Spark settings (see below).",
                "The home records the root on its first run and refuses another one afterwards."]
    return [f"Executors write stage outputs straight into the data store, by default `{HOME}/store`",
            "on the shared volume. To keep them in an object store instead, export with",
            "`--store s3a://BUCKET/PREFIX` (or add `\"--store\", \"s3a://BUCKET/PREFIX\"` to the",
            "`command` of each workload, or set `DATAFLOW_STORE` in its `env`), build the image with",
            "the `hadoop-aws` jar and its AWS SDK bundle matching Spark's Hadoop version (for example",
            "copied into `/opt/spark/jars`), and pass the credentials as Spark settings",
            "(`spark.hadoop.fs.s3a.access.key`, `spark.hadoop.fs.s3a.secret.key`, exported as",
            "`${ENV}` references). Choose the root before the first run: the home records it."]


def files(spec: FlowSpec, options: K8sOptions) -> dict[str, str]:
    """Every file of the Kubernetes export (relative path -> text)."""
    m = Manifests(spec, options)
    out = bundle.files(spec, prefix="bundle/")
    out["k8s/base.yaml"] = dump_yaml_all(m.base_objects())
    out["k8s/run-once.yaml"] = dump_yaml_all(m.workload("run"))
    out["k8s/schedule.yaml"] = dump_yaml_all(m.workload("schedule"))
    out["k8s/watch.yaml"] = dump_yaml_all(m.workload("watch"))
    out["Dockerfile"] = dockerfile(spec, options)
    out["README.md"] = readme(spec, m)
    return out
