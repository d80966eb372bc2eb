<?xml version="1.0" encoding="UTF-8"?>
<!--
  KITH-like XML (epikrise, henvisning, svarrapport) to an HTML fragment.

  Elements are matched by local name, so the demo namespace and un-namespaced documents
  both work. Only text and attribute values of the source are copied, always as text:
  no element or attribute of the source reaches the output. The result is sanitised
  again afterwards (rendering.sanitise).
-->
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:output method="html" encoding="UTF-8" indent="no"/>

  <xsl:param name="label_type" select="'Type'"/>
  <xsl:param name="label_date" select="'Date'"/>
  <xsl:param name="label_author" select="'Author'"/>
  <xsl:param name="label_institution" select="'Institution'"/>
  <xsl:param name="label_department" select="'Department'"/>
  <xsl:param name="label_patient" select="'Patient'"/>
  <xsl:param name="label_birth_date" select="'Date of birth'"/>
  <xsl:param name="label_analysis" select="'Analysis'"/>
  <xsl:param name="label_value" select="'Value'"/>
  <xsl:param name="label_unit" select="'Unit'"/>
  <xsl:param name="label_reference" select="'Reference'"/>

  <xsl:template match="/">
    <xsl:apply-templates select="*" mode="document"/>
  </xsl:template>

  <xsl:template match="*" mode="document">
    <div class="portal-kith">
      <dl class="portal-fields">
        <xsl:for-each select="*[local-name()='Type']">
          <dt><xsl:value-of select="$label_type"/></dt>
          <dd>
            <xsl:choose>
              <xsl:when test="@navn"><xsl:value-of select="@navn"/></xsl:when>
              <xsl:otherwise><xsl:value-of select="normalize-space(.)"/></xsl:otherwise>
            </xsl:choose>
          </dd>
        </xsl:for-each>
        <xsl:apply-templates mode="field"
          select="*[not(*) and not(local-name()='Type' or local-name()='Tittel' or local-name()='Merknad')]"/>
        <xsl:apply-templates mode="field" select="*[local-name()='Pasient']/*[not(*)]"/>
      </dl>
      <xsl:for-each select="*[local-name()='Innhold']/*">
        <section>
          <xsl:if test="normalize-space(@overskrift)">
            <h2 class="ds-heading" data-size="xs"><xsl:value-of select="@overskrift"/></h2>
          </xsl:if>
          <p class="ds-paragraph"><xsl:value-of select="normalize-space(.)"/></p>
        </section>
      </xsl:for-each>
      <xsl:for-each select="*[local-name()='Analyser'][*]">
        <table class="ds-table" data-border="true">
          <thead>
            <tr>
              <th scope="col"><xsl:value-of select="$label_analysis"/></th>
              <th scope="col"><xsl:value-of select="$label_value"/></th>
              <th scope="col"><xsl:value-of select="$label_unit"/></th>
              <th scope="col"><xsl:value-of select="$label_reference"/></th>
            </tr>
          </thead>
          <tbody>
            <xsl:for-each select="*">
              <tr>
                <td><xsl:value-of select="@navn"/></td>
                <td><xsl:value-of select="@verdi"/></td>
                <td><xsl:value-of select="@enhet"/></td>
                <td><xsl:value-of select="@referanse"/></td>
              </tr>
            </xsl:for-each>
          </tbody>
        </table>
      </xsl:for-each>
      <xsl:for-each select="*[local-name()='Merknad'][normalize-space(.)]">
        <p class="portal-note"><xsl:value-of select="normalize-space(.)"/></p>
      </xsl:for-each>
    </div>
  </xsl:template>

  <!-- One leaf element as a term and its value; known names get a translated label. -->
  <xsl:template match="*" mode="field">
    <dt>
      <xsl:choose>
        <xsl:when test="local-name()='Dato'"><xsl:value-of select="$label_date"/></xsl:when>
        <xsl:when test="local-name()='Forfatter'"><xsl:value-of select="$label_author"/></xsl:when>
        <xsl:when test="local-name()='Institusjon'"><xsl:value-of select="$label_institution"/></xsl:when>
        <xsl:when test="local-name()='Avdeling'"><xsl:value-of select="$label_department"/></xsl:when>
        <xsl:when test="local-name()='Navn'"><xsl:value-of select="$label_patient"/></xsl:when>
        <xsl:when test="local-name()='Fodselsdato'"><xsl:value-of select="$label_birth_date"/></xsl:when>
        <xsl:otherwise><xsl:value-of select="local-name()"/></xsl:otherwise>
      </xsl:choose>
    </dt>
    <dd><xsl:value-of select="normalize-space(.)"/></dd>
  </xsl:template>
</xsl:stylesheet>
