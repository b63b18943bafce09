"""The registry half of the AWS emulator (ECR), and the error shape every emulated AWS service shares.

One registry, account 123456789012. Images are addressed the way ECS task definitions name them,
`123456789012.dkr.ecr.<region>.amazonaws.com/<repository>:<tag>`; the region in a URI is not
checked (the sandbox has one registry). Images from any other registry (Docker Hub, public.ecr.aws)
count as pullable, so sidecars need no pushing.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

ACCOUNT_ID = "123456789012"
DEFAULT_REGION = "eu-west-1"
MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"

_IMAGE_URI = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/"
    r"(?P<repository>[^:@]+)(?::(?P<tag>[^@]+))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)


class AwsError(Exception):
    """An error answered in AWS's JSON shape: `{"__type": code, "message": ...}`."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def paginate(items: list, params: dict[str, Any], default: int, limit: int) -> tuple[list, str | None]:
    """One page of `items` by `maxResults`/`nextToken` (an offset, as opaque to clients as AWS's)."""
    size = params.get("maxResults") or default
    if not 1 <= size <= limit:
        raise AwsError("InvalidParameterException", f"maxResults must be between 1 and {limit}.")
    token = params.get("nextToken")
    start = int(token) if token and token.isdigit() else 0
    end = start + size
    return items[start:end], (str(end) if end < len(items) else None)


def repository_uri(name: str, region: str) -> str:
    return f"{ACCOUNT_ID}.dkr.ecr.{region}.amazonaws.com/{name}"


@dataclass
class Image:
    digest: str
    manifest: str
    tags: set[str]
    pushed_at: float


@dataclass
class Repository:
    name: str
    region: str
    created_at: float = field(default_factory=time.time)
    images: dict[str, Image] = field(default_factory=dict)  # by digest

    def describe(self) -> dict[str, Any]:
        return {
            "repositoryArn": f"arn:aws:ecr:{self.region}:{ACCOUNT_ID}:repository/{self.name}",
            "registryId": ACCOUNT_ID,
            "repositoryName": self.name,
            "repositoryUri": repository_uri(self.name, self.region),
            "createdAt": self.created_at,
            "imageTagMutability": "MUTABLE",
            "imageScanningConfiguration": {"scanOnPush": False},
            "encryptionConfiguration": {"encryptionType": "AES256"},
        }

    def find(self, image_id: dict[str, str]) -> Image | None:
        digest, tag = image_id.get("imageDigest"), image_id.get("imageTag")
        for image in self.images.values():
            if (digest is None or image.digest == digest) and (tag is None or tag in image.tags):
                return image
        return None

    def put(self, manifest: str, tag: str | None) -> Image:
        digest = "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()
        image = self.images.get(digest)
        if image is not None and (tag is None or tag in image.tags):
            raise AwsError("ImageAlreadyExistsException",
                           f"Image with digest '{digest}' and tag '{tag}' already exists in the repository "
                           f"with name '{self.name}' in registry with id '{ACCOUNT_ID}'")
        if tag is not None:  # tags are mutable: a pushed tag moves to the new image
            for other in self.images.values():
                other.tags.discard(tag)
        if image is None:
            image = self.images[digest] = Image(digest, manifest, set(), time.time())
        if tag is not None:
            image.tags.add(tag)
        return image

    def describe_image(self, image: Image) -> dict[str, Any]:
        detail = {
            "registryId": ACCOUNT_ID,
            "repositoryName": self.name,
            "imageDigest": image.digest,
            "imageSizeInBytes": len(image.manifest) * 1024,
            "imagePushedAt": image.pushed_at,
            "imageManifestMediaType": MANIFEST_TYPE,
            "artifactMediaType": "application/vnd.docker.container.image.v1+json",
        }
        if image.tags:
            detail["imageTags"] = sorted(image.tags)
        return detail


def _image_id_text(image_id: dict[str, str]) -> str:
    return (f"{{imageDigest:'{image_id.get('imageDigest', 'null')}', "
            f"imageTag:'{image_id.get('imageTag', 'null')}'}}")


class Registry:
    """ECR state and operations; not thread-safe by itself (the emulator holds its lock)."""

    def __init__(self) -> None:
        self.repositories: dict[str, Repository] = {}

    # -- what ECS asks ---------------------------------------------------------------------
    def has_image(self, uri: str) -> bool:
        """Whether a task could pull `uri`: always for foreign registries, when pushed for ours."""
        match = _IMAGE_URI.match(uri)
        if match is None or match["account"] != ACCOUNT_ID:
            return True
        repository = self.repositories.get(match["repository"])
        if repository is None:
            return False
        if match["digest"]:
            return repository.find({"imageDigest": match["digest"]}) is not None
        return repository.find({"imageTag": match["tag"] or "latest"}) is not None

    # -- control -----------------------------------------------------------------------------
    def push(self, repository: str, tag: str, region: str = DEFAULT_REGION) -> str:
        """Push a (synthetic) image as a CI job would; returns its URI. Creates the repository."""
        name = repository.split(".amazonaws.com/", 1)[-1]
        repo = self.repositories.get(name)
        if repo is None:
            repo = self.repositories[name] = Repository(name, region)
        manifest = json.dumps({
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                       "digest": "sha256:" + hashlib.sha256(f"{name}:{tag}".encode()).hexdigest()},
            "layers": [],
        })
        existing = repo.find({"imageTag": tag})
        if existing is None or existing.manifest != manifest:  # pushing the same build twice is a no-op
            repo.put(manifest, tag)
        return f"{repository_uri(name, repo.region)}:{tag}"

    # -- API ---------------------------------------------------------------------------------
    def handle(self, op: str, params: dict[str, Any], region: str) -> dict[str, Any]:
        handler = getattr(self, f"_op_{op}", None)
        if handler is None:
            raise AwsError("UnknownOperationException", f"ECR operation {op} is not emulated")
        return handler(params, region)

    def _repository(self, params: dict[str, Any]) -> Repository:
        name = params.get("repositoryName", "")
        registry = params.get("registryId", ACCOUNT_ID)
        repository = self.repositories.get(name) if registry == ACCOUNT_ID else None
        if repository is None:
            raise AwsError("RepositoryNotFoundException",
                           f"The repository with name '{name}' does not exist in the registry "
                           f"with id '{registry}'")
        return repository

    def _op_CreateRepository(self, params: dict[str, Any], region: str) -> dict[str, Any]:
        name = params["repositoryName"]
        if name in self.repositories:
            raise AwsError("RepositoryAlreadyExistsException",
                           f"The repository with name '{name}' already exists in the registry "
                           f"with id '{ACCOUNT_ID}'")
        self.repositories[name] = Repository(name, region)
        return {"repository": self.repositories[name].describe()}

    def _op_DescribeRepositories(self, params: dict[str, Any], region: str) -> dict[str, Any]:
        names = params.get("repositoryNames")
        if names:
            found = [self._repository({**params, "repositoryName": name}) for name in names]
        else:
            found = list(self.repositories.values())
        page, token = paginate(found, params, default=100, limit=1000)
        return {"repositories": [r.describe() for r in page], **({"nextToken": token} if token else {})}

    def _op_DescribeImages(self, params: dict[str, Any], region: str) -> dict[str, Any]:
        repository = self._repository(params)
        if params.get("imageIds"):
            images = []
            for image_id in params["imageIds"]:
                image = repository.find(image_id)
                if image is None:
                    raise AwsError("ImageNotFoundException",
                                   f"The image with imageId {_image_id_text(image_id)} does not exist within "
                                   f"the repository with name '{repository.name}' in the registry with id "
                                   f"'{ACCOUNT_ID}'")
                images.append(image)
        else:
            status = (params.get("filter") or {}).get("tagStatus", "ANY")
            images = [i for i in repository.images.values()
                      if status == "ANY" or (status == "TAGGED") == bool(i.tags)]
        page, token = paginate(images, params, default=100, limit=1000)
        return {"imageDetails": [repository.describe_image(i) for i in page],
                **({"nextToken": token} if token else {})}

    def _op_BatchGetImage(self, params: dict[str, Any], region: str) -> dict[str, Any]:
        repository = self._repository(params)
        images, failures = [], []
        for image_id in params.get("imageIds", []):
            image = repository.find(image_id)
            if image is None:
                failures.append({"imageId": image_id, "failureCode": "ImageNotFound",
                                 "failureReason": "Requested image not found"})
                continue
            images.append({"registryId": ACCOUNT_ID, "repositoryName": repository.name,
                           "imageId": {"imageDigest": image.digest, **image_id},
                           "imageManifest": image.manifest, "imageManifestMediaType": MANIFEST_TYPE})
        return {"images": images, "failures": failures}

    def _op_PutImage(self, params: dict[str, Any], region: str) -> dict[str, Any]:
        repository = self._repository(params)
        try:
            media_type = params.get("imageManifestMediaType") or json.loads(params["imageManifest"]).get("mediaType")
        except (ValueError, AttributeError):
            raise AwsError("InvalidParameterException", "Invalid parameter at 'imageManifest'") from None
        if not media_type:
            raise AwsError("InvalidParameterException",
                           "image manifest mediatype not provided in manifest or parameter")
        image = repository.put(params["imageManifest"], params.get("imageTag"))
        image_id = {"imageDigest": image.digest}
        if params.get("imageTag"):
            image_id["imageTag"] = params["imageTag"]
        return {"image": {"registryId": ACCOUNT_ID, "repositoryName": repository.name, "imageId": image_id,
                          "imageManifest": image.manifest,
                          "imageManifestMediaType": media_type}}
