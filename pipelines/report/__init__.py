"""Pictures and pages: PNG figures saved whole, self-contained HTML reports rendered by Jinja2."""

from pipelines.report._plots import pyplot, save_png
from pipelines.report._report import MAP_METHODS, Report, check_report_path, embedding_map, map_sample, write_report

__all__ = [
    "MAP_METHODS",
    "Report",
    "check_report_path",
    "embedding_map",
    "map_sample",
    "pyplot",
    "save_png",
    "write_report",
]
