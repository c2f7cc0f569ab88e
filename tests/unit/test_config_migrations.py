"""drillbook.toml `[migrations]`: the layout of migration folders, overriding detection."""

from __future__ import annotations

from pathlib import Path

import pytest

from checks.errors import ConfigError
from drills.config import MIGRATION_LAYOUTS, load_config, parse_config
from drills.migrations import Layout, LayoutError, load_migrations


class TestMigrationsConfig:
    def test_default_and_per_folder_layouts(self, tmp_path: Path) -> None:
        """A folder's own entry (relative to the config file) wins over the default layout."""
        path = tmp_path / "drillbook.toml"
        path.write_text('[migrations]\nlayout = "flyway"\n[migrations.folders]\n"db/next" = "updown"\n',
                        encoding="utf-8")
        config = load_config(path, environ={})
        assert config.migration_layout_for(tmp_path / "db" / "next") == "updown"
        assert config.migration_layout_for(tmp_path / "db" / "other") == "flyway"
        assert config.redacted()["migrations"]["layout"] == "flyway"

    def test_no_section_means_detected(self) -> None:
        """Without `[migrations]` the layout is detected from the file names."""
        assert parse_config("", path=None, environ={}).migration_layout_for(Path("db")) is None

    def test_the_known_layouts_are_the_loaders(self) -> None:
        """The config accepts exactly the layouts the migration loader knows."""
        assert set(MIGRATION_LAYOUTS) == {layout.value for layout in Layout}

    @pytest.mark.parametrize(("text", "key"), [
        ('[migrations]\nlayout = "rails"\n', "migrations.layout"),
        ('[migrations]\nlayuot = "flyway"\n', "migrations.layuot"),
        ('[migrations]\nlayout = 3\n', "migrations.layout"),
        ('[migrations.folders]\n"db" = "ecto"\n', "migrations.folders.db"),
        ('migrations = "flyway"\n', "migrations"),
    ])
    def test_bad_values_name_the_key_and_file(self, tmp_path: Path, text: str, key: str) -> None:
        """Strict like every other key: unknown keys and layouts stop the run, naming key and file."""
        path = tmp_path / "drillbook.toml"
        path.write_text(text, encoding="utf-8")
        with pytest.raises(ConfigError) as caught:
            load_config(path, environ={})
        assert f"`{key}`" in str(caught.value)
        assert str(path) in str(caught.value)

    def test_a_configured_layout_overrides_detection(self, tmp_path: Path) -> None:
        """Numbered files read as numbered when detected; the configured layout is the one used."""
        folder = tmp_path / "db"
        folder.mkdir()
        (folder / "0001_init.sql").write_text("CREATE TABLE t (id int);\n", encoding="utf-8")
        assert load_migrations(folder).layout is Layout.NUMBERED
        config = parse_config('[migrations]\nlayout = "flyway"\n', path=tmp_path / "drillbook.toml",
                              environ={})
        with pytest.raises(LayoutError):
            load_migrations(folder, layout=config.migration_layout_for(folder))
