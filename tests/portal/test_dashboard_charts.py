"""Finding 7 of the walk-through: whole ticks on count axes, "no data yet" instead of a flat line,
titles as headings above the charts, one colour per region, no one-column comparison table (one
region's figures are the tiles and tables above it), and a note on live e-cards and wallet
linkages. In Chinese, the portal's default."""

import datetime as dt
import re

import pytest
from django.urls import reverse
from django.utils import translation

from backoffice.dashboards.charts import bar_chart, line_chart
from backoffice.dashboards.rollups import rollups_rebuild
from portal.models import Role
from testkit.screens import sign_in

DAYS = [dt.date(2026, 1, 1) + dt.timedelta(days=i) for i in range(5)]


def axis_ticks(svg: str) -> list[str]:
    """The y axis's labels (written just left of the plot, x = 52), not the dates."""
    return re.findall(r'<text x="52" y="[^"]+" class="axis" text-anchor="end">([^<]+)<', svg)


def test_a_count_axis_with_a_top_of_one_has_whole_ticks_only():
    svg = line_chart(title="t", days=DAYS, series=[("n", [0, 1, 0, 0, 0])])
    assert axis_ticks(svg) == ["0", "1"]


def test_an_amount_axis_keeps_its_half_line():
    svg = line_chart(title="t", days=DAYS, series=[("yuan", [0, 0.5, 1, 0, 0])])
    assert len(axis_ticks(svg)) == 3


def test_an_empty_series_says_no_data_instead_of_a_flat_line():
    with translation.override("zh-hans"):
        svg = line_chart(title="t", days=DAYS, series=[("n", [0, 0, 0, 0, 0])])
        bars = bar_chart(title="b", items=[("a", 0), ("b", 0)])
    for chart in (svg, bars):
        assert "暂无数据" in chart
        assert "polyline" not in chart and "<rect" not in chart


@pytest.mark.parametrize(("language", "legend"), [("zh-hans", "结算（今日：2）"), ("en", "Settlements (today: 2)")])
def test_the_legend_says_its_figure_is_today_s(language, legend):
    """A bare "结算 (0)" beside a week of settlements read as "none at all"."""
    with translation.override(language):
        svg = line_chart(
            title="t", days=DAYS, series=[("结算" if language == "zh-hans" else "Settlements", [5, 9, 0, 7, 2])]
        )
    assert re.search(r'<g class="legend s0">.*?<text[^>]*>([^<]+)</text>', svg).group(1) == legend


def test_a_region_keeps_its_colour_whatever_the_order():
    first = bar_chart(title="t", items=[("上海", 3), ("广东", 2)], keys=["310000", "440000"])
    second = bar_chart(title="t", items=[("广东", 2), ("上海", 3)], keys=["440000", "310000"])
    for svg in (first, second):
        assert re.search(r'class="bar k310000"><text[^>]*>上海<', svg)
        assert re.search(r'class="bar k440000"><text[^>]*>广东<', svg)


@pytest.mark.django_db
def test_administrator_of_one_region_gets_figures_not_a_comparison(client, make_user, make_citizen):
    make_citizen("310000", with_card=True)
    rollups_rebuild()
    sign_in(client, make_user(Role.REGION_ADMIN, ("310000",)))
    page = client.get(reverse("dashboard")).content.decode()
    assert "各地区对比" not in page
    assert 'id="regions-h"' not in page and "dash-table regions" not in page, "no one-column table"
    assert 'data-metric="active-citizens">1<' in page, "the region's figures are the tiles"
    assert re.search(r'<h3 id="chart-settled-h">[^<]+</h3><svg', page), "the title is a heading above the chart"
    assert "暂无数据" in page, "no settlement yet"
    note = re.search(r'data-note="live-cards">([^<]+)<', page).group(1)
    assert "有效电子凭证" in note and "多个钱包" in note


@pytest.mark.django_db
def test_one_region_opened_from_the_comparison_has_no_one_column_table(client, make_user, make_citizen):
    make_citizen("310000", with_card=True)
    make_citizen("440000", with_card=True)
    rollups_rebuild()
    sign_in(client, make_user(Role.NATIONAL_OPERATOR, ()))
    page = client.get(reverse("dashboard_region", args=["310000"])).content.decode()
    assert 'data-metric="active-citizens">1<' in page
    assert 'id="regions-h"' not in page and "dash-table regions" not in page


@pytest.mark.django_db
def test_national_operator_still_compares_the_regions(client, make_user, make_citizen):
    make_citizen("310000", with_card=True)
    make_citizen("440000", with_card=True)
    rollups_rebuild()
    sign_in(client, make_user(Role.NATIONAL_OPERATOR, ()))
    page = client.get(reverse("dashboard")).content.decode()
    assert "各地区对比" in page
    assert 'class="bar k310000"' in page and 'class="bar k440000"' in page
