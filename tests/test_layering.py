"""lib/frcnn's folders import only what docs/DEVELOPING.md's map allows (its "may import" column).

A lower layer importing a higher one (the engine importing the training loop, say) is how a
package turns into a knot; this test names the file and the import that breaks the map.
"""

import ast
import os

LIB = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib", "frcnn")

BASE = {"errors", "config", "utils"}
ALLOWED = {
    "errors": set(),
    "config": {"errors"},
    "utils": {"errors", "config"},
    "ops": {"errors"},
    "boxes": {"ops", "config", "errors"},
    "caffe": {"ops"} | BASE,
    "datasets": {"boxes"} | BASE,
    "nets": {"caffe"} | BASE,
    "roi_data": {"boxes", "caffe", "datasets"} | BASE,
    "rpn": {"boxes", "caffe", "roi_data", "ops"} | BASE,
    "inference": {"boxes", "caffe", "datasets", "ops"} | BASE,
}
# modules whose job is to reach across: upstream's import paths and proposal generation
EXCEPTIONS = {
    "utils/cython_bbox.py": {"boxes"},  # alias of upstream's utils.cython_bbox
    "rpn/generate.py": {"datasets", "inference"},  # runs a net over a dataset (upstream's lib/rpn)
}
TOP = {"training", "cli", "fast_rcnn"}  # may import every layer below them (not each other, but training <- cli)


def frcnn_imports(path: str) -> set[str]:
    """The frcnn subpackages (first name after ``frcnn.``) a file imports."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "frcnn":
                names = [f"frcnn.{a.name}" for a in node.names]
            elif node.module.startswith("frcnn."):
                names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("frcnn.")]
        found |= {n.split(".")[1] for n in names}
    return found


def test_every_module_imports_only_what_the_map_allows():
    problems = []
    for root, _dirs, files in os.walk(LIB):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(root, name)
            rel = os.path.relpath(path, LIB).replace(os.sep, "/")
            layer = rel.split("/")[0].removesuffix(".py")
            if layer in TOP or layer == "__init__":
                continue
            assert layer in ALLOWED, f"{rel}: folder '{layer}' is not in the map (docs/DEVELOPING.md)"
            allowed = ALLOWED[layer] | EXCEPTIONS.get(rel, set()) | {layer, "_C"}
            for imported in sorted(frcnn_imports(path) - allowed):
                problems.append(f"lib/frcnn/{rel} imports frcnn.{imported}")
    assert not problems, "imports that break the map:\n" + "\n".join(problems)


def test_training_and_cli_are_not_imported_by_the_layers_below():
    for root, _dirs, files in os.walk(LIB):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                rel = os.path.relpath(path, LIB).replace(os.sep, "/")
                if rel.split("/")[0].removesuffix(".py") not in TOP:
                    assert not frcnn_imports(path) & {"training", "cli"}, rel
