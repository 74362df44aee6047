"""Masks of residents' personal data (gridmap.privacy): pure functions."""

from gridmap.privacy import PII_ROLES, ROLES, has_pii, mask_id_number, mask_name, mask_phone, mask_record


def test_mask_name():
    assert mask_name("张三") == "张*"
    assert mask_name("欧阳娜娜") == "欧***"
    assert mask_name("李") == "*"
    assert mask_name(" 王五 ") == "王*"
    assert mask_name("") == ""
    assert mask_name(None) is None


def test_mask_phone():
    assert mask_phone("13812341234") == "138****1234"
    assert mask_phone("138-1234-1234") == "138****1234"
    assert mask_phone("138 1234 1234") == "138****1234"
    assert mask_phone("0571-87654321") == "057*****4321"
    assert mask_phone("110") == "***"
    assert mask_phone("1234567") == "*******"
    assert mask_phone(None) is None


def test_mask_id_number():
    assert mask_id_number("110101199001011234") == "1101**********1234"
    assert mask_id_number("11010119900101123X") == "1101**********123X"
    assert mask_id_number("110101900101123") == "1101*******1123"
    assert mask_id_number("12345678") == "********"
    assert mask_id_number(None) is None


def test_masks_keep_length_and_hide_the_middle():
    idn = "330103198512253216"
    m = mask_id_number(idn)
    assert len(m) == len(idn) and "19851225" not in m


def test_mask_record_masks_only_pii():
    r = {"household_id": "H1", "grid_code": "G1", "name": "张三", "phone": "13812341234", "id_number": None,
         "size": 3}
    out = mask_record(r)
    assert out == {"household_id": "H1", "grid_code": "G1", "name": "张*", "phone": "138****1234", "id_number": None,
                   "size": 3}
    assert r["name"] == "张三"  # the input is not changed
    assert has_pii(r) and not has_pii({"name": None, "phone": ""})


def test_roles():
    assert set(PII_ROLES) <= set(ROLES)
    assert "planner" not in PII_ROLES and "viewer" not in PII_ROLES
