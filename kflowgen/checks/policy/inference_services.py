"""KF618: a KServe InferenceService in a team overlay serves the team's own models the way kflowgen can check: in
Standard mode (the pods, Services and network policy kflowgen reasons about; Knative's differ), cluster-local (KServe
makes no Ingress of its own: exposure goes through kflowgen's, held to the environment's domain by KF614), and every
model read from the team's own NAS claim (`pvc://nas/<path>`, no `..`): no storage URI of another claim, bucket or web
address, no storage credentials (`storage`, a request logger's too), no list of storage URIs (KServe mounts a whole
claim for those) and no storage container of the team's choosing. A predictor's model runs on the platform's ClusterServingRuntime
(`kserve.runtime`: the model server's image, command and arguments), named in `model.runtime`: not another runtime
the cluster has, nor one KServe picks itself (no `runtime`, or a framework field such as `sklearn`)."""
from __future__ import annotations

from kflowgen.checks.objects import KSERVE_CONTAINERS, as_dict, inference_service, pod_specs, ptr

CODE = "KF618"
TITLE = ("InferenceService not in Standard mode, not cluster-local, reading a model from outside the team NAS, or on "
         "another serving runtime")

NAS = "pvc://nas/"
MODE, VISIBILITY = "serving.kserve.io/deploymentMode", "networking.kserve.io/visibility"
HINT = "a team's models are read from its own NAS: write storageUri: pvc://nas/<folder on the NAS>"


def _uri_problem(uri) -> str | None:
    if not isinstance(uri, str) or not uri.startswith(NAS):
        return "is not on the team's NAS claim (pvc://nas/...)"
    parts = uri[len(NAS):].rstrip("/").split("/")
    if any(p in ("", ".", "..") for p in parts):
        return "has an empty, '.' or '..' part"
    return None


def check(obj, ctx):
    if ctx.team is None or not inference_service(obj):
        return
    meta = as_dict(obj.get("metadata"))
    if as_dict(meta.get("annotations")).get(MODE) != "Standard":
        yield ptr("metadata", "annotations", MODE), f"is '{as_dict(meta.get('annotations')).get(MODE, '')}', not " \
            "Standard", "serve in KServe's Standard mode (annotation serving.kserve.io/deploymentMode: Standard)"
    if as_dict(meta.get("labels")).get(VISIBILITY) != "cluster-local":
        yield ptr("metadata", "labels", VISIBILITY), "is not cluster-local: KServe would expose the model itself", \
            "label it networking.kserve.io/visibility: cluster-local; expose a model with host in its spec"
    runtime = ctx.kserve.get(ctx.env)
    for at, component in pod_specs(obj):
        if runtime and at.endswith("/predictor"):  # where KServe does not serve, no InferenceService is (KF607)
            yield from _runtime(at, component, runtime)
        for field in ("storageUris", "storageContainerName"):
            if field in component:
                yield f"{at}/{field}", f"{field} is not allowed", HINT
        if "storage" in as_dict(component.get("logger")):
            yield f"{at}/logger/storage", "storage credentials and paths are not allowed", \
                "a request logger sends to its url; remove logger.storage"
        for name in KSERVE_CONTAINERS:
            impl = component.get(name)
            if not isinstance(impl, dict):
                continue
            if "storage" in impl:
                yield f"{at}/{name}/storage", "storage credentials and paths are not allowed", HINT
            if "storageUri" in impl:
                problem = _uri_problem(impl["storageUri"])
                if problem:
                    yield f"{at}/{name}/storageUri", f"'{impl['storageUri']}' {problem}", HINT


def _runtime(at: str, predictor: dict, runtime: str | None):
    hint = f"serve with model: {{modelFormat: ..., runtime: {runtime}}} (the platform's serving runtime)"
    for name in KSERVE_CONTAINERS:
        if name != "model" and name in predictor:
            yield f"{at}/{name}", f"{name} lets KServe pick the serving runtime", hint
    model = predictor.get("model")
    if isinstance(model, dict) and model.get("runtime") != runtime:
        yield f"{at}/model/runtime", f"'{model.get('runtime', '')}' is not the platform's serving runtime " \
            f"('{runtime}')", hint
