"""Column headers as users write them, mapped onto the data contract (``gridmap.contract``).

Street offices keep rosters in Excel with Chinese headers; Amap/Baidu exports use ``lng``/``lat``.
Matching ignores case, surrounding spaces, full-width brackets and anything in brackets
(``联系电话（手机）`` → ``联系电话``).
"""

from __future__ import annotations

import re

#: Headers that mean longitude / latitude in a CSV or Excel sheet.
LON_HEADERS = ("lon", "lng", "long", "longitude", "x", "经度", "东经", "经度坐标")
LAT_HEADERS = ("lat", "latitude", "y", "纬度", "北纬", "纬度坐标")

#: Aliases shared by every layer.
COMMON = {
    "name": ("姓名", "名称", "名字", "户主姓名", "户主", "name"),
    "phone": ("电话", "联系电话", "手机", "手机号", "手机号码", "联系方式", "phone", "tel", "mobile"),
    "id_number": ("身份证号", "身份证号码", "身份证", "公民身份号码", "证件号码", "id_number", "idcard", "id_card"),
    "grid_code": ("网格编号", "网格代码", "网格编码", "所属网格", "所属网格编号", "网格", "grid", "grid_code", "gridcode"),
    "community_code": ("社区编号", "社区代码", "社区编码", "所属社区", "community", "community_code"),
    "street_code": ("街道编号", "街道代码", "街道编码", "所属街道", "street", "street_code"),
    "kind": ("类型", "类别", "种类", "网格类型", "kind", "type"),
}

#: Aliases per layer; the layer's own ones win over COMMON.
BY_LAYER = {
    "households": {
        "household_id": ("户编号", "户号", "住户编号", "家庭编号", "户籍编号", "household_id", "hh_id", "id"),
        "size": ("户人数", "家庭人数", "家庭人口", "家庭人口数", "人口数", "人数", "size", "persons"),
        "tags": ("标签", "人员类别", "特殊人群", "人群类别", "tags"),
        "building": ("楼栋", "楼栋号", "楼号", "幢", "栋", "楼", "building"),
        "unit": ("单元", "单元号", "unit"),
        "room": ("室", "房号", "房间号", "门牌号", "户室号", "room"),
    },
    "members": {
        "member_id": ("党员编号", "党员号", "编号", "member_id", "id"),
        "skills": ("技能", "专长", "特长", "技能标签", "skills"),
        "available": ("是否可用", "在岗", "是否在岗", "可用", "available"),
        "min_links": ("最少联系户数", "最少户数", "min_links"),
        "max_links": ("最多联系户数", "最多户数", "max_links"),
        "kind": ("身份", "人员类型", "类型", "kind"),
    },
    "grids": {
        "grid_code": ("网格编号", "网格代码", "网格编码", "编号", "代码", "grid_code", "code"),
        "name": ("网格名称", "名称", "name"),
        "kind": ("网格类型", "城乡类型", "类型", "kind"),
        "has_branch": ("是否有支部", "有无党支部", "有无支部", "是否建立支部", "has_branch"),
        "branch_name": ("支部名称", "党支部名称", "branch_name"),
    },
    "communities": {
        "code": ("社区编号", "社区代码", "社区编码", "编号", "代码", "code"),
        "name": ("社区名称", "名称", "name"),
    },
    "streets": {
        "code": ("街道编号", "街道代码", "街道编码", "编号", "代码", "code"),
        "name": ("街道名称", "名称", "name"),
    },
    "service_centres": {
        "centre_id": ("服务中心编号", "中心编号", "站点编号", "编号", "centre_id", "center_id", "id"),
        "radius_m": ("服务半径", "服务半径米", "半径", "radius_m", "radius"),
    },
    "incidents": {
        "incident_id": ("事件编号", "事件号", "编号", "incident_id", "id"),
        "category": ("事件类别", "事件类型", "类别", "category"),
        "reported_at": ("上报时间", "报告时间", "发生时间", "reported_at", "time"),
        "level": ("等级", "事件等级", "级别", "level"),
        "status": ("状态", "处理状态", "status"),
        "required_skill": ("所需技能", "需要技能", "required_skill"),
    },
}

_BRACKETS = re.compile(r"[（(【\[].*?[)）】\]]")


def normalise_header(h: str) -> str:
    """Lower-case, strip, drop bracketed notes and inner spaces: ``' 联系电话（手机） '`` → ``'联系电话'``."""
    h = _BRACKETS.sub("", str(h))
    return re.sub(r"\s+", "", h).strip().lower()


def header_map(columns, layer: str) -> dict[str, str]:
    """Mapping ``{original header: contract name}`` for the headers of ``layer`` we recognise.

    A contract name already present verbatim is never overwritten by an alias, and each contract
    name is taken by the first header that matches it.
    """
    aliases: dict[str, str] = {}
    for table in (COMMON, BY_LAYER.get(layer, {})):
        for target, names in table.items():
            for n in names:
                aliases[normalise_header(n)] = target
    present = {normalise_header(c) for c in columns}
    taken: set[str] = set()
    out: dict[str, str] = {}
    for c in columns:
        key = normalise_header(c)
        if key in aliases:
            target = aliases[key]
            if target in taken or (target in present and key != target):
                continue
            out[c] = target
            taken.add(target)
    return out


def find_lonlat(columns) -> tuple[str | None, str | None]:
    """The (lon, lat) column names among ``columns``, or None for the one not found."""
    norm = {normalise_header(c): c for c in columns}
    lon = next((norm[h] for h in map(normalise_header, LON_HEADERS) if h in norm), None)
    lat = next((norm[h] for h in map(normalise_header, LAT_HEADERS) if h in norm), None)
    return lon, lat
