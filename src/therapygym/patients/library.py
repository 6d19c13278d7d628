"""Loading patient profiles from YAML, with errors that name the file, field and expectation.

The catalogue (`load_profiles()`, what `--patients` selects from and `patients list`
shows) is the shipped library plus the libraries installed packages add through the
entry-point group `therapygym.patients`, each a folder of profile files. Their profiles
join by id, so every selector (ids, globs, filters, `risk`) reaches them unchanged; an id
two libraries share is refused, since a run stores sessions by profile id.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from pydantic import ValidationError

from therapygym.errors import TherapygymError, describe_validation_error
from therapygym.patients.profile import PatientProfile
from therapygym.registry import data_folders
from therapygym.yamlfile import read_yaml_mapping

PATIENT_PLUGINS = "therapygym.patients"


class ProfileError(TherapygymError):
    """A patient profile file that cannot be read or does not match the schema."""


def library_dir() -> Path:
    """The profiles shipped with therapygym."""
    return Path(str(resources.files("therapygym.patients") / "library"))


def load_profile(path: Path | str) -> PatientProfile:
    """Read one profile; the file's stem must equal its `id`."""
    p = Path(path)
    raw = read_yaml_mapping(p, "patient profile", ProfileError)
    try:
        profile = PatientProfile.model_validate(raw)
    except ValidationError as err:
        raise ProfileError(describe_validation_error(err, str(p))) from None
    if profile.id != p.stem:
        raise ProfileError(f"{p}: field 'id' is '{profile.id}' but the file is named '{p.stem}'")
    return profile


def load_profiles(directory: Path | str | None = None) -> list[PatientProfile]:
    """Every `*.yaml` profile in a directory (default: the catalogue, the shipped library
    and the installed plug-in libraries), sorted by id."""
    if directory is None:
        return _catalogue()
    d = Path(directory)
    if not d.is_dir():
        raise ProfileError(f"{d}: not a directory of patient profiles")
    return sorted((load_profile(f) for f in d.glob("*.yaml")), key=lambda pr: pr.id)


def _catalogue() -> list[PatientProfile]:
    """The shipped profiles and every plug-in library's, refusing an id found twice."""
    seen: dict[str, str] = {}  # id -> its file and library, for the clash error
    profiles: list[PatientProfile] = []
    libraries = [("therapygym", library_dir())]
    for folder in data_folders(PATIENT_PLUGINS):
        libraries.append((f"plug-in '{folder.name}' ({folder.source})", folder.path))
    for library, directory in libraries:
        found = load_profiles(directory)
        if not found:
            raise ProfileError(f"{library}: {directory} holds no patient profiles (*.yaml)")
        for profile in found:
            where = f"{directory / (profile.id + '.yaml')} ({library})"
            if profile.id in seen:
                raise ProfileError(
                    f"patient id '{profile.id}' is in two libraries: {seen[profile.id]} and "
                    f"{where}; a run stores sessions by profile id, so ids must be unique"
                )
            seen[profile.id] = where
            profiles.append(profile)
    return sorted(profiles, key=lambda pr: pr.id)


def check_profile_files(paths: list[Path]) -> list[tuple[Path, str | None]]:
    """Each profile file among `paths` (files, or folders of *.yaml) with its problem (None
    when it is valid), so every problem is reported, not only the first; a folder without
    profile files is a problem of its own."""
    checked: list[tuple[Path, str | None]] = []
    for path in paths:
        found = sorted(path.glob("*.y*ml")) if path.is_dir() else [path]
        if not found:
            checked.append((path, f"{path}: a folder with no profile files (*.yaml)"))
        for file in found:
            try:
                load_profile(file)
            except ProfileError as e:
                checked.append((file, str(e)))
            else:
                checked.append((file, None))
    return checked
