"""The recovery window the drill derives from Barman's catalog, as the plugin does."""

from __future__ import annotations

from tests.drill.restored_overlay import plugin_window


def backup(status: str, end: str) -> dict:
    # The fields of `barman-cloud-backup-list --format json` the window reads
    # (barman 3.19.1, barman/infofile.py, BackupInfo.to_json).
    return {"status": status, "end_time_iso": end}


def test_the_window_spans_the_completed_backups_only():
    listing = {
        "backups_list": [
            backup("FAILED", "2026-11-01T03:00:05+00:00"),
            backup("DONE", "2026-11-02T04:00:12.5+01:00"),
            backup("DONE", "2026-11-30T03:00:41+00:00"),
            backup("STARTED", "2026-12-01T03:00:00+00:00"),
        ]
    }
    assert plugin_window(listing) == {
        "firstRecoverabilityPoint": "2026-11-02T03:00:12Z",
        "lastSuccessfulBackupTime": "2026-11-30T03:00:41Z",
    }
