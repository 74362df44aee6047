"""Folium maps built from the engines' results: coverage (网格覆盖图), service circles (15分钟服务圈),
links (包片联户), incidents (事件热力图, 红黄绿灯) and grid redraw (网格调整), on OSM, Amap (GCJ-02
shifted), Tianditu or no tiles; PNG screenshots through headless Chromium (``maps.render``).

Imports gridmap and geodata only.
"""
