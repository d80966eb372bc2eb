<?xml version="1.0" encoding="UTF-8"?>
<!--
  A CDA R2 ClinicalDocument with a structuredBody to an HTML fragment: the header facts
  and the sections' narrative blocks. Narrative markup is mapped to a few plain elements;
  everything else (links, images, styles, render multimedia) is reduced to its text. The
  result is sanitised again afterwards (rendering.sanitise).
-->
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
  xmlns:cda="urn:hl7-org:v3" exclude-result-prefixes="cda">
  <xsl:output method="html" encoding="UTF-8" indent="no"/>

  <xsl:param name="label_date" select="'Date'"/>
  <xsl:param name="label_author" select="'Author'"/>
  <xsl:param name="label_institution" select="'Institution'"/>
  <xsl:param name="label_patient" select="'Patient'"/>

  <xsl:template match="/">
    <xsl:apply-templates select="cda:ClinicalDocument"/>
  </xsl:template>

  <xsl:template match="cda:ClinicalDocument">
    <div class="portal-cda">
      <dl class="portal-fields">
        <xsl:for-each select="cda:effectiveTime/@value">
          <dt><xsl:value-of select="$label_date"/></dt>
          <dd><xsl:value-of select="."/></dd>
        </xsl:for-each>
        <xsl:for-each select="cda:author/cda:assignedAuthor/cda:assignedPerson/cda:name">
          <dt><xsl:value-of select="$label_author"/></dt>
          <dd><xsl:call-template name="name"/></dd>
        </xsl:for-each>
        <xsl:for-each select="cda:custodian/cda:assignedCustodian/cda:representedCustodianOrganization/cda:name">
          <dt><xsl:value-of select="$label_institution"/></dt>
          <dd><xsl:value-of select="normalize-space(.)"/></dd>
        </xsl:for-each>
        <xsl:for-each select="cda:recordTarget/cda:patientRole/cda:patient/cda:name">
          <dt><xsl:value-of select="$label_patient"/></dt>
          <dd><xsl:call-template name="name"/></dd>
        </xsl:for-each>
      </dl>
      <xsl:apply-templates select="cda:component/cda:structuredBody/cda:component/cda:section"/>
    </div>
  </xsl:template>

  <xsl:template name="name">
    <xsl:for-each select="cda:prefix | cda:given | cda:family">
      <xsl:if test="position() &gt; 1"><xsl:text> </xsl:text></xsl:if>
      <xsl:value-of select="normalize-space(.)"/>
    </xsl:for-each>
    <xsl:if test="not(*)"><xsl:value-of select="normalize-space(.)"/></xsl:if>
  </xsl:template>

  <xsl:template match="cda:section">
    <section>
      <xsl:if test="normalize-space(cda:title)">
        <h2 class="ds-heading" data-size="xs"><xsl:value-of select="cda:title"/></h2>
      </xsl:if>
      <xsl:apply-templates select="cda:text" mode="narrative"/>
      <xsl:apply-templates select="cda:component/cda:section"/>
    </section>
  </xsl:template>

  <!-- Narrative block: a few structures kept, the rest reduced to text. -->
  <xsl:template match="cda:text" mode="narrative">
    <div><xsl:apply-templates mode="narrative"/></div>
  </xsl:template>
  <xsl:template match="cda:paragraph" mode="narrative">
    <p class="ds-paragraph"><xsl:apply-templates mode="narrative"/></p>
  </xsl:template>
  <xsl:template match="cda:br" mode="narrative"><br/></xsl:template>
  <xsl:template match="cda:list[@listType='ordered']" mode="narrative">
    <ol><xsl:apply-templates select="cda:item" mode="narrative"/></ol>
  </xsl:template>
  <xsl:template match="cda:list" mode="narrative">
    <ul><xsl:apply-templates select="cda:item" mode="narrative"/></ul>
  </xsl:template>
  <xsl:template match="cda:item" mode="narrative">
    <li><xsl:apply-templates mode="narrative"/></li>
  </xsl:template>
  <xsl:template match="cda:table" mode="narrative">
    <table class="ds-table" data-border="true"><xsl:apply-templates select="cda:thead | cda:tbody" mode="narrative"/></table>
  </xsl:template>
  <xsl:template match="cda:thead" mode="narrative">
    <thead><xsl:apply-templates select="cda:tr" mode="narrative"/></thead>
  </xsl:template>
  <xsl:template match="cda:tbody" mode="narrative">
    <tbody><xsl:apply-templates select="cda:tr" mode="narrative"/></tbody>
  </xsl:template>
  <xsl:template match="cda:tr" mode="narrative">
    <tr><xsl:apply-templates select="cda:th | cda:td" mode="narrative"/></tr>
  </xsl:template>
  <xsl:template match="cda:th" mode="narrative">
    <th><xsl:apply-templates mode="narrative"/></th>
  </xsl:template>
  <xsl:template match="cda:td" mode="narrative">
    <td><xsl:apply-templates mode="narrative"/></td>
  </xsl:template>
  <xsl:template match="cda:content[@emphasis]" mode="narrative">
    <em><xsl:apply-templates mode="narrative"/></em>
  </xsl:template>
  <!-- Multimedia and footnote references point elsewhere: not shown. -->
  <xsl:template match="cda:renderMultiMedia | cda:footnoteRef" mode="narrative"/>
  <xsl:template match="*" mode="narrative"><xsl:apply-templates mode="narrative"/></xsl:template>
  <xsl:template match="text()" mode="narrative"><xsl:value-of select="."/></xsl:template>
</xsl:stylesheet>
