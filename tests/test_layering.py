"""The packages form layers: a module imports only from layers below its own (or from its own package
on its own layer), read from the imports of every module, function-level imports included."""

import ast

from tests.conftest import REPOSITORY

#: Module prefixes by layer, lowest first; the longest matching prefix gives a module's layer.
LAYERS = {
    "common": 0,  # the ground floor: errors, files, progress, signals, contrasts, checks, cores
    "datamodules": 1,  # reading, checking and preparing data
    "evaluation": 2,  # scoring files on disk
    "evaluation.report": 3,  # tables and figures over scores
    "pipeline.contract": 4,  # the method contract, the one thing methods depend on
    "pipeline.registry": 4,
    "clustering": 5,  # the methods (neither family depends on the other)
    "lightning_modules": 5,
    "pipeline": 6,  # the experiment and the command line
}
PACKAGES = sorted({prefix.split(".")[0] for prefix in LAYERS})


def layer_of(module: str) -> tuple[int, str] | None:
    """(layer, package) of a project module; None for anything else."""
    matches = [prefix for prefix in LAYERS if module == prefix or module.startswith(prefix + ".")]
    if not matches:
        return None
    return LAYERS[max(matches, key=len)], module.split(".")[0]


def project_imports(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def test_no_module_imports_from_a_layer_above_its_own_or_a_sibling_package():
    broken = []
    for package in PACKAGES:
        for path in sorted((REPOSITORY / package).rglob("*.py")):
            module = ".".join(path.relative_to(REPOSITORY).with_suffix("").parts).removesuffix(".__init__")
            own_layer, own_package = layer_of(module)
            for imported in project_imports(path):
                found = layer_of(imported)
                if found is None:
                    continue
                layer, imported_package = found
                if layer > own_layer or (layer == own_layer and imported_package != own_package):
                    broken.append(f"{module} (layer {own_layer}) imports {imported} (layer {layer})")
    assert not broken, "\n".join(broken)


def test_the_layer_table_covers_every_package_of_the_project():
    found = {path.parent.name for path in REPOSITORY.glob("*/__init__.py") if path.parent.name != "tests"}
    assert found == set(PACKAGES)
